/*-------------------------------------------------------------------------
 *
 * tenant.c
 *	  The current tenant: the invsync.tenant setting, unless a DBA pinned
 *	  the role to a tenant (invsync.tenant_roles).
 *
 * Every invsync function and view works in invsync.current_tenant()
 * (DESIGN §6).  Unpinned roles choose it with invsync.tenant.  A role
 * pinned with invsync.pin_role() works in its tenant whatever it sets
 * (DESIGN §7):
 *
 *	- A pin holds for the role and for every role that is a member of it,
 *	  directly or not (a member may SET ROLE to it, and shares its
 *	  privileges), but not for a superuser as such.
 *	- A session is pinned when its session user, its current role outside
 *	  SECURITY DEFINER functions (after SET ROLE) or its current user is:
 *	  SET ROLE to an unpinned role, or a SECURITY DEFINER function owned
 *	  by one, does not lift a pin.
 *	- In a pinned session, invsync.tenant unset (or empty) means the
 *	  pinned tenant, and set to it is fine; SET to any other tenant is
 *	  refused (IV026), and when the setting names another tenant anyway
 *	  (set before SET ROLE, or by ALTER ROLE ... SET), every function and
 *	  view refuses with IV026 rather than work in either tenant.
 *	- Pins that name two tenants for one session refuse everything
 *	  (IV026), until a DBA leaves one.
 *
 * The pins are read once per backend, and for each role asked about, the
 * answer is kept.  A statement trigger on tenant_roles invalidates the
 * table's relcache entry, which makes every backend read them again at
 * its next transaction (or lock); a change of role membership drops the
 * answers.  With no pins at all, the current tenant costs a test of a
 * flag, as before pins existed.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/tenant.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "invsync.h"

PG_FUNCTION_INFO_V1(invsync_current_tenant_sql);
PG_FUNCTION_INFO_V1(invsync_pinned_tenant_sql);
PG_FUNCTION_INFO_V1(invsync_tenant_roles_changed);

/* invsync.tenant, as set and as parsed by its hooks */
static char *tenant_setting = NULL;
typedef struct TenantSetting
{
	int64		tenant;
	bool		given;			/* false when unset or empty */
} TenantSetting;
static TenantSetting current_setting = {0, false};

/* one row of invsync.tenant_roles */
typedef struct Pin
{
	Oid			role;
	int64		tenant;
} Pin;

/*
 * The pins, read from the table whose OID is pins_relid; valid until a
 * relcache invalidation of that table (or of every relation).
 */
static bool pins_valid = false;
static Oid	pins_relid = InvalidOid;
static Pin *pins = NULL;
static int	npins = 0;
static int	pins_allocated = 0;

/* what the pins say of one role */
typedef enum PinState
{
	ROLE_UNPINNED,
	ROLE_PINNED,
	ROLE_PINNED_TWICE			/* to two tenants, through two pins */
} PinState;

typedef struct RolePin
{
	Oid			role;
	PinState	state;
	int64		tenant;
	Oid			pinned_role;	/* the role a pin names (role or one it is a
								 * member of) */
	int64		other_tenant;	/* for ROLE_PINNED_TWICE */
} RolePin;

/*
 * Answers for the last few roles asked about (a session asks about its
 * session user, its outer user and the owner of whatever SECURITY DEFINER
 * function runs); dropped with the pins and on any membership change.
 */
#define ROLE_ANSWERS 8
static RolePin role_answers[ROLE_ANSWERS];
static int	nrole_answers = 0;
static int	next_role_answer = 0;

static bool callbacks_registered = false;

/* what the pins say of a session */
typedef struct SessionPin
{
	PinState	state;
	Oid			role;			/* the session's role the pin holds for */
	Oid			pinned_role;	/* the role the pin names */
	int64		tenant;
	int64		other_tenant;	/* for ROLE_PINNED_TWICE */
} SessionPin;

/* a relation changed: if it is tenant_roles, or maybe, read the pins again */
static void
forget_pins(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == pins_relid)
	{
		pins_valid = false;
		nrole_answers = 0;
		invsync_citus_tenant_changed();
	}
}

/* role membership changed: work the answers out again */
static void
forget_role_answers(Datum arg, int cacheid, uint32 hashvalue)
{
	nrole_answers = 0;
}

/*
 * Read invsync.tenant_roles, as committed now (not as the transaction's
 * snapshot saw it: what is kept must hold for later transactions too),
 * bypassing privileges and row security, as a catalog is read: with a
 * catalog snapshot, which for a table without a syscache is taken afresh,
 * and which, unlike GetLatestSnapshot(), parallel workers may take (they
 * evaluate current_tenant() too, and read the pins for themselves).  Without
 * the table (the extension is not installed, or being installed or
 * upgraded from 0.2) there are no pins, and the table is looked for again
 * next time.
 */
static void
load_pins(void)
{
	Oid			namespace_oid;
	Oid			relid;
	Relation	rel;
	AttrNumber	role_att;
	AttrNumber	tenant_att;
	Snapshot	snapshot;
	TableScanDesc scan;
	TupleTableSlot *slot;

	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(forget_pins, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, forget_role_answers,
									  (Datum) 0);
		callbacks_registered = true;
	}

	npins = 0;
	nrole_answers = 0;
	namespace_oid = get_namespace_oid("invsync", true);
	relid = OidIsValid(namespace_oid) ?
		get_relname_relid("tenant_roles", namespace_oid) : InvalidOid;
	if (!OidIsValid(relid))
		return;

	rel = table_open(relid, AccessShareLock);
	role_att = get_attnum(relid, "role");
	tenant_att = get_attnum(relid, "tenant_id");
	if (role_att == InvalidAttrNumber || tenant_att == InvalidAttrNumber ||
		TupleDescAttr(RelationGetDescr(rel), role_att - 1)->atttypid != REGROLEOID ||
		TupleDescAttr(RelationGetDescr(rel), tenant_att - 1)->atttypid != INT8OID)
		elog(ERROR, "table invsync.tenant_roles does not have the expected columns");

	snapshot = RegisterSnapshot(GetCatalogSnapshot(relid));
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		role_null;
		bool		tenant_null;
		Datum		role = slot_getattr(slot, role_att, &role_null);
		Datum		tenant = slot_getattr(slot, tenant_att, &tenant_null);

		if (role_null || tenant_null)
			continue;
		if (npins == pins_allocated)
		{
			pins_allocated = Max(8, pins_allocated * 2);
			pins = pins == NULL
				? MemoryContextAlloc(TopMemoryContext, sizeof(Pin) * pins_allocated)
				: repalloc(pins, sizeof(Pin) * pins_allocated);
		}
		pins[npins].role = DatumGetObjectId(role);
		pins[npins].tenant = DatumGetInt64(tenant);
		npins++;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	pins_relid = relid;
	pins_valid = true;
}

/* what the pins say of a role, worked out once */
static const RolePin *
pin_of_role(Oid role)
{
	RolePin    *answer;

	for (int i = 0; i < nrole_answers; i++)
		if (role_answers[i].role == role)
			return &role_answers[i];

	if (nrole_answers < ROLE_ANSWERS)
		answer = &role_answers[nrole_answers++];
	else
	{
		answer = &role_answers[next_role_answer];
		next_role_answer = (next_role_answer + 1) % ROLE_ANSWERS;
	}
	answer->role = role;
	answer->state = ROLE_UNPINNED;
	for (int i = 0; i < npins; i++)
	{
		/* membership of any kind, but not superuserness (PostgreSQL 15) */
		if (!is_member_of_role_nosuper(role, pins[i].role))
			continue;
		if (answer->state == ROLE_UNPINNED)
		{
			answer->state = ROLE_PINNED;
			answer->tenant = pins[i].tenant;
			answer->pinned_role = pins[i].role;
		}
		else if (pins[i].tenant != answer->tenant)
		{
			answer->state = ROLE_PINNED_TWICE;
			answer->other_tenant = pins[i].tenant;
			break;
		}
	}
	return answer;
}

/*
 * What the pins say of this session, from what they say of its session
 * user, outer user and current user: pinned twice if one of them is, or
 * if two are pinned to different tenants; else pinned if one is.
 */
static void
pin_of_session(SessionPin *result)
{
	Oid			roles[3];

	roles[0] = GetSessionUserId();
	roles[1] = GetOuterUserId();
	roles[2] = GetUserId();
	result->state = ROLE_UNPINNED;
	for (int r = 0; r < lengthof(roles); r++)
	{
		const RolePin *pin;

		if (r > 0 && (roles[r] == roles[0] || roles[r] == roles[r - 1]))
			continue;
		pin = pin_of_role(roles[r]);
		if (pin->state == ROLE_UNPINNED)
			continue;
		if (result->state == ROLE_UNPINNED || pin->state == ROLE_PINNED_TWICE)
		{
			result->state = pin->state;
			result->role = roles[r];
			result->pinned_role = pin->pinned_role;
			result->tenant = pin->tenant;
			result->other_tenant = pin->other_tenant;
		}
		else if (pin->tenant != result->tenant)
		{
			result->state = ROLE_PINNED_TWICE;
			result->other_tenant = pin->tenant;
		}
		if (result->state == ROLE_PINNED_TWICE)
			return;
	}
}

/*
 * Whether the session is pinned, after reading the pins if need be;
 * without any pin, false at the cost of a flag test.
 */
static bool
session_is_pinned(SessionPin *pin)
{
	if (!pins_valid)
	{
		/* catalogs and tables can be read in a transaction only */
		if (!IsTransactionState())
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
					 errmsg("invsync's current tenant is known inside a transaction only")));
		load_pins();
	}
	if (npins == 0)
		return false;
	pin_of_session(pin);
	return pin->state != ROLE_UNPINNED;
}

/* IV026: a session pinned to two tenants */
static void
report_pinned_twice(const SessionPin *pin)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVSYNC_TENANT_PINNED),
			 errmsg("role \"%s\" is pinned to more than one tenant",
					GetUserNameFromId(pin->role, false)),
			 errdetail("Through its role memberships, pins name tenants " INT64_FORMAT " and " INT64_FORMAT ".",
					   pin->tenant, pin->other_tenant),
			 errhint("A DBA pins each role to one tenant at most (invsync.tenant_roles).")));
}

/* the detail of an IV026 for a pin: which role it names */
static int
pin_detail(const SessionPin *pin)
{
	if (pin->pinned_role == pin->role)
		return errdetail("A pinned role works in its own tenant only.");
	return errdetail("It is a member of role \"%s\", which is pinned to that tenant; a pinned role works in its own tenant only.",
					 GetUserNameFromId(pin->pinned_role, false));
}

/*
 * The tenant of the current session or transaction: the pinned tenant of a
 * pinned session (IV026 when invsync.tenant names another, or pins two),
 * otherwise invsync.tenant, 0 when unset.
 */
int64
invsync_current_tenant(void)
{
	SessionPin	pin;

	if (pins_valid && npins == 0)
		return current_setting.tenant;
	if (!session_is_pinned(&pin))
		return current_setting.tenant;
	if (pin.state == ROLE_PINNED_TWICE)
		report_pinned_twice(&pin);
	if (current_setting.given && current_setting.tenant != pin.tenant)
		ereport(ERROR,
				(errcode(ERRCODE_INVSYNC_TENANT_PINNED),
				 errmsg("role \"%s\" is pinned to tenant " INT64_FORMAT ", but invsync.tenant is " INT64_FORMAT,
						GetUserNameFromId(pin.role, false), pin.tenant,
						current_setting.tenant),
				 pin_detail(&pin),
				 errhint("Reset invsync.tenant, or set it to " INT64_FORMAT ".",
						 pin.tenant)));
	return pin.tenant;
}

/*
 * invsync.tenant holds a bigint, which an integer setting cannot: accept
 * the empty string (tenant 0) or a non-negative 64-bit integer, and parse it
 * once here so that invsync_current_tenant() costs nothing.  A pinned
 * session's SET of another tenant is refused here, when it can be told:
 * in a transaction, where the pins can be read.
 */
static bool
check_tenant(char **newval, void **extra, GucSource source)
{
	TenantSetting *result;
	int64		parsed = 0;
	bool		given = false;
	char	   *end;
	SessionPin	pin;

	if (*newval != NULL && **newval != '\0')
	{
		errno = 0;
		parsed = strtoi64(*newval, &end, 10);
		if (errno != 0 || *end != '\0' || end == *newval || parsed < 0)
		{
			GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
			GUC_check_errmsg("invalid value for invsync.tenant: \"%s\"",
							 invsync_clip(*newval, strlen(*newval)));
			GUC_check_errdetail("A tenant is a non-negative bigint; unset means tenant 0.");
			return false;
		}
		given = true;
	}

	if (given && source == PGC_S_SESSION && IsTransactionState() &&
		!IsParallelWorker() && session_is_pinned(&pin) &&
		(pin.state == ROLE_PINNED_TWICE || parsed != pin.tenant))
	{
		GUC_check_errcode(ERRCODE_INVSYNC_TENANT_PINNED);
		if (pin.state == ROLE_PINNED_TWICE)
		{
			GUC_check_errmsg("role \"%s\" is pinned to more than one tenant",
							 GetUserNameFromId(pin.role, false));
			GUC_check_errdetail("Through its role memberships, pins name tenants " INT64_FORMAT " and " INT64_FORMAT ".",
								pin.tenant, pin.other_tenant);
		}
		else
		{
			GUC_check_errmsg("role \"%s\" is pinned to tenant " INT64_FORMAT,
							 GetUserNameFromId(pin.role, false),
							 pin.tenant);
			GUC_check_errdetail("A pinned role works in its own tenant only; unset, invsync.tenant means that tenant.");
		}
		return false;
	}

	result = (TenantSetting *) malloc(sizeof(TenantSetting));
	if (result == NULL)
		return false;
	result->tenant = parsed;
	result->given = given;
	*extra = result;
	return true;
}

static void
assign_tenant(const char *newval, void *extra)
{
	TenantSetting *setting = (TenantSetting *) extra;

	if (setting->tenant != current_setting.tenant ||
		setting->given != current_setting.given)
		invsync_citus_tenant_changed();
	current_setting = *setting;
}

/* define invsync.tenant (from _PG_init) */
void
invsync_define_tenant_setting(void)
{
	DefineCustomStringVariable("invsync.tenant",
							   "The tenant whose rows invsync functions read and write.",
							   "Unset or empty means tenant 0, or the tenant a DBA pinned the role to.",
							   &tenant_setting,
							   "",
							   PGC_USERSET,
							   0,
							   check_tenant, assign_tenant, NULL);
}

/* SQL: invsync.current_tenant() returns bigint */
Datum
invsync_current_tenant_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(invsync_current_tenant());
}

/*
 * Whether this session is pinned to a tenant, and to which (IV026 when
 * pinned to two).
 */
bool
invsync_pinned_tenant(int64 *tenant)
{
	SessionPin	pin;

	if (!session_is_pinned(&pin))
		return false;
	if (pin.state == ROLE_PINNED_TWICE)
		report_pinned_twice(&pin);
	*tenant = pin.tenant;
	return true;
}

/*
 * SQL: invsync._pinned_tenant() returns bigint.  The tenant this session
 * is pinned to, NULL when it is not; for the functions that work across
 * tenants unless the caller is pinned.
 */
Datum
invsync_pinned_tenant_sql(PG_FUNCTION_ARGS)
{
	int64		tenant;

	if (!invsync_pinned_tenant(&tenant))
		PG_RETURN_NULL();
	PG_RETURN_INT64(tenant);
}

/*
 * Trigger function: AFTER ... FOR EACH STATEMENT on invsync.tenant_roles.
 * Invalidates the table's relcache entry, which every backend (this one
 * at once, the others once this transaction commits) takes as the sign
 * to read the pins again.
 */
Datum
invsync_tenant_roles_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "invsync._tenant_roles_changed() must be called as a trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
