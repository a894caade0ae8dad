/*-------------------------------------------------------------------------
 *
 * invsync.h
 *	  Declarations shared by the files of the invsync extension: settings,
 *	  the session helpers (tenant, correlation id) and the worker's entry
 *	  points.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/invsync.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVSYNC_H
#define INVSYNC_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/relcache.h"

/* the SQLSTATEs of class IV raised from C (README.md lists them all) */
#define ERRCODE_INVSYNC_UNKNOWN_SKU			MAKE_SQLSTATE('I','V','0','0','1')
#define ERRCODE_INVSYNC_UNKNOWN_LOCATION	MAKE_SQLSTATE('I','V','0','0','2')
#define ERRCODE_INVSYNC_INVALID_QUANTITY	MAKE_SQLSTATE('I','V','0','0','3')
#define ERRCODE_INVSYNC_KEY_REUSED			MAKE_SQLSTATE('I','V','0','0','5')
#define ERRCODE_INVSYNC_INVALID_KEY			MAKE_SQLSTATE('I','V','0','1','0')
#define ERRCODE_INVSYNC_TENANT_PINNED		MAKE_SQLSTATE('I','V','0','2','6')
#define ERRCODE_INVSYNC_TOO_LONG			MAKE_SQLSTATE('I','V','0','2','7')
#define ERRCODE_INVSYNC_BAD_LISTING_IDS		MAKE_SQLSTATE('I','V','0','2','8')
#define ERRCODE_INVSYNC_BAD_BATCH_SIZE		MAKE_SQLSTATE('I','V','0','2','9')
#define ERRCODE_INVSYNC_BAD_SIGNATURE		MAKE_SQLSTATE('I','V','0','3','0')
#define ERRCODE_INVSYNC_MALFORMED_PUSH		MAKE_SQLSTATE('I','V','0','3','1')
#define ERRCODE_INVSYNC_PUSH_TOO_LARGE		MAKE_SQLSTATE('I','V','0','3','2')
#define ERRCODE_INVSYNC_UNKNOWN_PUSH_SHOP	MAKE_SQLSTATE('I','V','0','3','3')
#define ERRCODE_INVSYNC_UNKNOWN_CHANNEL		MAKE_SQLSTATE('I','V','0','3','4')

/*
 * The longest codes and texts the functions take, in characters (IV027
 * beyond; README.md lists them with the limits SQL keeps: order references
 * and idempotency keys 255, reservation lines 1,000 and 1 MB).
 */
#define INVSYNC_MAX_SKU_LENGTH			128
#define INVSYNC_MAX_LOCATION_LENGTH		64
#define INVSYNC_MAX_REASON_LENGTH		500
#define INVSYNC_MAX_REFERENCE_LENGTH	255
#define INVSYNC_MAX_NAME_LENGTH			200

/* the most of a caller's value an error message shows, in bytes */
#define INVSYNC_CLIP_BYTES				40

/* longest correlation id accepted, in bytes */
#define INVSYNC_CORRELATION_ID_MAX 128

/* settings (src/invsync.c) */
extern char *invsync_database;
extern char *invsync_worker_role;
extern int	invsync_batch_size;
extern int	invsync_lease_ms;
extern int	invsync_http_timeout_ms;
extern int	invsync_connect_timeout_ms;
extern int	invsync_max_in_flight;
extern int	invsync_backoff_base_ms;
extern int	invsync_backoff_max_ms;
extern int	invsync_poll_interval_ms;
extern int	invsync_attempt_retention_min;
extern int	invsync_idle_shop_retention_ms;
extern char *invsync_ca_file;
extern bool invsync_allow_insecure_http;
extern char *invsync_test_connect_to;
extern bool invsync_direct_path;

/* ledger_direct.c: what every direct path checks before writing */
struct ResultRelInfo;
extern bool direct_has_statement_triggers(const struct ResultRelInfo *rri);
extern bool direct_sql_checks_more(List *range_table, Oid sequence,
								   const Relation *rels, int nrels);

/* session helpers (src/invsync.c) */
extern const char *invsync_current_correlation_id(void);

/* bounded inputs (src/inputs.c) */
extern void invsync_check_length(Datum value, const char *what, int max_chars);
extern char *invsync_clip(const char *value, int len);

/* the current tenant (src/tenant.c) */
extern void invsync_define_tenant_setting(void);
extern int64 invsync_current_tenant(void);
extern bool invsync_pinned_tenant(int64 *tenant);

/* where Citus is loaded (src/citus.c) */
extern bool invsync_citus_loaded;
extern void invsync_citus_init(void);
extern void invsync_citus_tenant_changed(void);
extern void invsync_citus_share_correlation_id(void);

/* the sync worker (src/worker.c) */
extern void invsync_worker_init(void);
extern PGDLLEXPORT void invsync_worker_main(Datum main_arg);
extern PGDLLEXPORT void invsync_launcher_main(Datum main_arg);

#endif							/* INVSYNC_H */
