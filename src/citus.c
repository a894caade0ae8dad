/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  What invsync does differently where Citus is loaded: nothing else
 *	  changes on a single node.
 *
 * Whether Citus is loaded is read once, when invsync's library is loaded:
 * Citus must come first in shared_preload_libraries, so it is in the list
 * or not at all.  Two things follow from it:
 *
 *	- The ledger's saved statements (ledger.c) leave the choice of plan to
 *	  the plan cache instead of forcing a generic one: Citus routes a
 *	  statement to the shard of its tenant only when it sees the tenant's
 *	  value, which a generic plan hides behind a parameter.
 *
 *	- A stock movement sends its correlation id to the nodes its
 *	  transaction writes on (invsync_citus_share_correlation_id), where
 *	  the triggers that queue the change run.
 *
 *	- A planner hook, run before Citus's own, replaces every call of
 *	  invsync.current_tenant() and invsync._pinned_tenant() in a statement
 *	  by its value.  The tenant is the setting of the session that runs
 *	  the statement; left as a call, Citus would send it to the nodes
 *	  holding the shards, where invsync.tenant is unset, and the views
 *	  would read tenant 0 there (and find nothing).  As a value, it also
 *	  lets Citus route the statement to the tenant's shard alone.  A plan
 *	  holding the value is valid for that tenant only: every cached plan is
 *	  invalidated when invsync.tenant or the pins change, and the plan is
 *	  marked as depending on the role, for the pins.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/citus.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/planner.h"
#include "parser/parse_func.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "storage/proc.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "invsync.h"

bool		invsync_citus_loaded = false;

static planner_hook_type prev_planner_hook = NULL;

/* the OIDs of the two functions, looked up again after pg_proc changes */
static bool tenant_functions_known = false;
static Oid	current_tenant_oid = InvalidOid;
static Oid	pinned_tenant_oid = InvalidOid;

/* whether a plan of this backend may hold a tenant as a value */
static bool tenant_in_plans = false;

/* the transaction whose correlation id the other nodes were sent */
static LocalTransactionId correlation_shared_for = InvalidLocalTransactionId;

static void
forget_tenant_functions(Datum arg, int cacheid, uint32 hashvalue)
{
	tenant_functions_known = false;
}

/* invsync.<name>() taking no argument, or InvalidOid */
static Oid
lookup_function(const char *name)
{
	return LookupFuncName(list_make2(makeString("invsync"), makeString(pstrdup(name))),
						  0, NULL, true);
}

static void
look_up_tenant_functions(void)
{
	if (tenant_functions_known)
		return;
	current_tenant_oid = lookup_function("current_tenant");
	pinned_tenant_oid = lookup_function("_pinned_tenant");
	tenant_functions_known = true;
}

static bool
is_tenant_call(Node *node)
{
	return IsA(node, FuncExpr) &&
		OidIsValid(((FuncExpr *) node)->funcid) &&
		(((FuncExpr *) node)->funcid == current_tenant_oid ||
		 ((FuncExpr *) node)->funcid == pinned_tenant_oid);
}

static bool
contains_tenant_call(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (is_tenant_call(node))
		return true;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, contains_tenant_call,
								 context, 0);
	return expression_tree_walker(node, contains_tenant_call, context);
}

/* the call's value, as the function would return it now */
static Node *
tenant_value(FuncExpr *call)
{
	int64		tenant;

	if (call->funcid == current_tenant_oid)
		tenant = invsync_current_tenant();
	else if (!invsync_pinned_tenant(&tenant))
		return (Node *) makeNullConst(INT8OID, -1, InvalidOid);
	return (Node *) makeConst(INT8OID, -1, InvalidOid, sizeof(int64),
							  Int64GetDatum(tenant), false, FLOAT8PASSBYVAL);
}

static Node *
replace_tenant_calls(Node *node, void *context)
{
	if (node == NULL)
		return NULL;
	if (is_tenant_call(node))
		return tenant_value((FuncExpr *) node);
	if (IsA(node, Query))
		return (Node *) query_tree_mutator((Query *) node,
										   replace_tenant_calls, context, 0);
	return expression_tree_mutator(node, replace_tenant_calls, context);
}

/*
 * planner_hook: the tenant as a value, then Citus's planner (or whichever
 * hook came before ours).
 */
static PlannedStmt *
invsync_planner(Query *parse, const char *query_string, int cursor_options,
				ParamListInfo bound_params)
{
	bool		replaced = false;
	PlannedStmt *result;

	look_up_tenant_functions();
	if (OidIsValid(current_tenant_oid) &&
		contains_tenant_call((Node *) parse, NULL))
	{
		parse = (Query *) replace_tenant_calls((Node *) parse, NULL);
		replaced = true;
		tenant_in_plans = true;
	}

	if (prev_planner_hook != NULL)
		result = prev_planner_hook(parse, query_string, cursor_options,
								   bound_params);
	else
		result = standard_planner(parse, query_string, cursor_options,
								  bound_params);
	if (replaced)
		result->dependsOnRole = true;
	return result;
}

/*
 * Under Citus the triggers that queue a stock change run on the node that
 * holds the tenant's shards, where this session's invsync.correlation_id
 * (or the id made for this transaction) is unknown: they would make up an
 * id of their own.  Citus sends a SET LOCAL made while
 * citus.propagate_set_commands is 'local' to every node the transaction
 * uses, now or later, but only from a transaction block, a procedure or a
 * DO block: from within a function a query calls it does not.  So the
 * transaction's id goes out by a DO block, once, or again when a
 * rolled-back subtransaction took the setting back.  Runs inside the
 * caller's SPI connection.
 */
void
invsync_citus_share_correlation_id(void)
{
	const char *setting;

	if (!invsync_citus_loaded)
		return;
	setting = GetConfigOption("invsync.correlation_id", true, false);
	if (correlation_shared_for == MyProc->lxid && setting != NULL &&
		strcmp(setting, invsync_current_correlation_id()) == 0)
		return;

	if (SPI_execute("DO $share$"
					"DECLARE"
					"  v_propagate text :="
					"    pg_catalog.current_setting('citus.propagate_set_commands');"
					"BEGIN"
					"  SET LOCAL citus.propagate_set_commands = 'local';"
					"  EXECUTE pg_catalog.format('SET LOCAL invsync.correlation_id = %L',"
					"                            invsync.correlation_id());"
					"  EXECUTE pg_catalog.format('SET LOCAL citus.propagate_set_commands = %L',"
					"                            v_propagate);"
					"END $share$", false, 0) < 0)
		elog(ERROR, "could not send the correlation id to the other nodes");
	correlation_shared_for = MyProc->lxid;
}

/*
 * The tenant of this session may have changed (invsync.tenant was set, the
 * pins changed): plans holding the old one must be made again.
 */
void
invsync_citus_tenant_changed(void)
{
	if (tenant_in_plans)
		ResetPlanCache();
}

/*
 * From _PG_init: whether Citus is loaded (before us, as it requires), and
 * if so, the planner hook.
 */
void
invsync_citus_init(void)
{
	char	   *libraries;
	List	   *names;
	ListCell   *lc;

	libraries = pstrdup(GetConfigOption("shared_preload_libraries", false, false));
	if (!SplitIdentifierString(libraries, ',', &names))
		return;
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), "citus") == 0)
			invsync_citus_loaded = true;
	if (!invsync_citus_loaded)
		return;

	prev_planner_hook = planner_hook;
	planner_hook = invsync_planner;
	CacheRegisterSyscacheCallback(PROCOID, forget_tenant_functions, (Datum) 0);
}
