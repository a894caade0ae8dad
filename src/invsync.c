/*-------------------------------------------------------------------------
 *
 * invsync.c
 *	  Module load: the preload requirement, the invsync.* settings, and the
 *	  small SQL-callable helpers every invsync function builds on: the
 *	  current correlation id and the calling role.  (The current tenant
 *	  and its setting are tenant.c's.)
 *
 * invsync must be in shared_preload_libraries because it hosts a
 * background worker and a commit hook that wakes it; loading it any other
 * way is refused with a hint.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/invsync.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "invsync.h"

PG_MODULE_MAGIC;

/* settings */
char	   *invsync_database = NULL;
char	   *invsync_worker_role = NULL;
int			invsync_batch_size = 1000;
int			invsync_lease_ms = 60000;
int			invsync_http_timeout_ms = 10000;
int			invsync_connect_timeout_ms = 3000;
int			invsync_max_in_flight = 64;
int			invsync_backoff_base_ms = 1000;
int			invsync_backoff_max_ms = 300000;
int			invsync_poll_interval_ms = 1000;
int			invsync_attempt_retention_min = 7 * 24 * 60;
int			invsync_idle_shop_retention_ms = 60 * 1000;
char	   *invsync_ca_file = NULL;
bool		invsync_allow_insecure_http = false;
char	   *invsync_test_connect_to = NULL;
bool		invsync_direct_path = true;

static char *correlation_id_setting = NULL;
static int	idempotency_retention_min = 7 * 24 * 60;

/* the correlation id generated for a transaction that set none */
static LocalTransactionId generated_for_lxid = InvalidLocalTransactionId;
static char generated_correlation_id[37];

void		_PG_init(void);

PG_FUNCTION_INFO_V1(invsync_correlation_id_sql);
PG_FUNCTION_INFO_V1(invsync_caller_sql);

/*
 * A correlation id travels into HTTP headers and log records, so only
 * printable ASCII without spaces or quotes is allowed.
 */
static bool
check_correlation_id(char **newval, void **extra, GucSource source)
{
	const char *c;

	if (*newval == NULL)
		return true;
	if (strlen(*newval) > INVSYNC_CORRELATION_ID_MAX)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("invsync.correlation_id is too long");
		GUC_check_errdetail("A correlation id has at most %d bytes.",
							INVSYNC_CORRELATION_ID_MAX);
		return false;
	}
	for (c = *newval; *c; c++)
	{
		if (*c <= ' ' || *c > '~' || *c == '"' || *c == '\\')
		{
			GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
			GUC_check_errmsg("invsync.correlation_id contains a character that is not allowed");
			GUC_check_errdetail("Use printable ASCII without spaces, quotes or backslashes.");
			return false;
		}
	}
	return true;
}

/*
 * invsync.test_connect_to, for tests only: a comma-separated list of
 * HOST:PORT:TARGET:TARGET_PORT entries (libcurl's CURLOPT_CONNECT_TO) that
 * send requests for a marketplace host to a simulator instead.  The target
 * must be the loopback address, so the setting can reroute the worker's
 * traffic to a local test double and nowhere else; TLS is still verified
 * against the original host name.
 */
static bool
check_test_connect_to(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	char	   *entry;
	char	   *saveptr = NULL;

	if (*newval == NULL || **newval == '\0')
		return true;
	copy = pstrdup(*newval);
	for (entry = strtok_r(copy, ",", &saveptr); entry != NULL;
		 entry = strtok_r(NULL, ",", &saveptr))
	{
		char	   *port = strrchr(entry, ':');
		char	   *target = NULL;
		size_t		target_len = 0;
		int			fields = 0;
		char	   *c;

		for (c = entry; *c; c++)
			fields += (*c == ':');
		if (port != NULL && port > entry)
		{
			for (target = port - 1; target > entry && target[-1] != ':'; target--)
				;
			target_len = port - target;
		}
		if (fields != 3 || port == NULL || port[1] == '\0' ||
			strspn(port + 1, "0123456789") != strlen(port + 1) ||
			target == entry ||
			!((target_len == 9 && strncmp(target, "127.0.0.1", 9) == 0) ||
			  (target_len == 9 && strncmp(target, "localhost", 9) == 0)))
		{
			pfree(copy);
			GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
			GUC_check_errmsg("invalid entry in invsync.test_connect_to");
			GUC_check_errdetail("Entries are HOST:PORT:127.0.0.1:PORT, separated by commas; only loopback targets are allowed.");
			return false;
		}
	}
	pfree(copy);
	return true;
}

void
_PG_init(void)
{
	/* during pg_upgrade the server runs only to restore the schema */
	if (IsBinaryUpgrade)
		return;

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invsync must be loaded via shared_preload_libraries"),
				 errhint("Add invsync to shared_preload_libraries in postgresql.conf and restart the server.")));

	invsync_define_tenant_setting();

	DefineCustomStringVariable("invsync.correlation_id",
							   "Correlation id stored with every change this session makes.",
							   "When unset, one is generated per transaction.",
							   &correlation_id_setting,
							   "",
							   PGC_USERSET,
							   0,
							   check_correlation_id, NULL, NULL);

	/*
	 * Superuser-only: it is the DBA's switch for the direct paths of
	 * adjust() (ledger_direct.c) and of the sync worker's claim and record
	 * (worker_direct.c), and one that any session could turn back on would
	 * switch nothing off.  Off costs speed only: the SQL paths give the
	 * same results (the regress suite and t/023 run both ways).
	 */
	DefineCustomBoolVariable("invsync.direct_path",
							 "Lets invsync.adjust() and the sync worker read and write their rows without SQL when they can.",
							 "Off, they always run their SQL statements; the results are the same.",
							 &invsync_direct_path,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("invsync.idempotency_retention",
							"How long idempotency keys are kept before purge_idempotency_keys() may remove them.",
							"Keep it longer than any client or marketplace retry window.",
							&idempotency_retention_min,
							7 * 24 * 60, 60, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomStringVariable("invsync.database",
							   "Database the sync worker connects to.",
							   NULL,
							   &invsync_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("invsync.worker_role",
							   "Role the sync worker runs its transactions as; never a superuser.",
							   "The worker logs in as the bootstrap superuser, then acts only as this role.",
							   &invsync_worker_role,
							   "invsync_worker",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	/*
	 * A claim costs a fixed part (about 10 ms on a 2-core machine) besides
	 * its rows: 1,000 rows a claim keep that part near 10 us a push, where
	 * 200 made it 50 us; the worker holds at most two batches.
	 */
	DefineCustomIntVariable("invsync.batch_size",
							"Most queue rows the sync worker claims in one transaction.",
							NULL,
							&invsync_batch_size,
							1000, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invsync.lease",
							"How long a claimed queue row stays leased to the worker.",
							"Must outlive the HTTP timeout plus any local wait for a rate-limit slot.",
							&invsync_lease_ms,
							60000, 1000, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invsync.http_timeout",
							"Total time allowed for one marketplace HTTP request.",
							NULL,
							&invsync_http_timeout_ms,
							10000, 1, 600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invsync.connect_timeout",
							"Time allowed to connect (TCP and TLS) to a marketplace.",
							NULL,
							&invsync_connect_timeout_ms,
							3000, 1, 600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invsync.max_in_flight",
							"Most marketplace requests the worker keeps in flight at once.",
							"Each shop is further limited by its own in-flight cap.",
							&invsync_max_in_flight,
							64, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invsync.backoff_base",
							"First retry delay after a retryable failure; it doubles per attempt.",
							NULL,
							&invsync_backoff_base_ms,
							1000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invsync.backoff_max",
							"Longest retry delay.",
							NULL,
							&invsync_backoff_max_ms,
							300000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invsync.poll_interval",
							"Longest the worker sleeps before looking for due rows no commit announced.",
							"Backoffs falling due and expired leases are found this way.",
							&invsync_poll_interval_ms,
							1000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invsync.idle_shop_retention",
							"How long the worker keeps an idle shop in memory.",
							"An idle shop's token bucket and credentials are kept this long after its last request, so that its next burst may use the bucket it refilled; after that it is loaded again when its rows are claimed.",
							&invsync_idle_shop_retention_ms,
							60 * 1000, 0, 24 * 60 * 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invsync.attempt_retention",
							"How long rows of invsync.sync_attempts are kept.",
							NULL,
							&invsync_attempt_retention_min,
							7 * 24 * 60, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomStringVariable("invsync.ca_file",
							   "CA bundle used to verify marketplace TLS certificates; empty means the system default.",
							   NULL,
							   &invsync_ca_file,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("invsync.allow_insecure_http",
							 "Allow marketplace base URLs with plain http (tests and benchmarks only).",
							 "Plain http sends access tokens and signatures in clear text.  "
							 "Off, http:// base URLs are refused when stored and never sent to.",
							 &invsync_allow_insecure_http,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("invsync.test_connect_to",
							   "For tests: send requests for HOST:PORT to a loopback address instead.",
							   "Comma-separated HOST:PORT:127.0.0.1:PORT entries, as libcurl's CONNECT_TO; TLS is still verified for HOST.",
							   &invsync_test_connect_to,
							   "",
							   PGC_SIGHUP,
							   GUC_NOT_IN_SAMPLE,
							   check_test_connect_to, NULL, NULL);

	MarkGUCPrefixReserved("invsync");

	invsync_citus_init();
	invsync_worker_init();
}

/*
 * The correlation id of the current transaction: invsync.correlation_id
 * when set, otherwise a random UUID made once per transaction, so that all
 * rows one transaction writes share it.
 */
const char *
invsync_current_correlation_id(void)
{
	uint8		bytes[16];

	if (correlation_id_setting != NULL && correlation_id_setting[0] != '\0')
		return correlation_id_setting;

	if (generated_for_lxid != MyProc->lxid ||
		generated_for_lxid == InvalidLocalTransactionId)
	{
		if (!pg_strong_random(bytes, sizeof(bytes)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random correlation id")));
		bytes[6] = (bytes[6] & 0x0f) | 0x40;	/* version 4 */
		bytes[8] = (bytes[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
		snprintf(generated_correlation_id, sizeof(generated_correlation_id),
				 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
				 bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5],
				 bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11],
				 bytes[12], bytes[13], bytes[14], bytes[15]);
		generated_for_lxid = MyProc->lxid;
	}
	return generated_correlation_id;
}

/* SQL: invsync.correlation_id() returns text */
Datum
invsync_correlation_id_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(invsync_current_correlation_id()));
}

/*
 * SQL: invsync._caller() returns name.  The role that called us from
 * outside any SECURITY DEFINER function, which is who a ledger row's actor
 * should name (current_user inside invsync's functions is their owner).
 */
Datum
invsync_caller_sql(PG_FUNCTION_ARGS)
{
	Name		result = (Name) palloc0(NAMEDATALEN);

	namestrcpy(result, GetUserNameFromId(GetOuterUserId(), false));
	PG_RETURN_NAME(result);
}
