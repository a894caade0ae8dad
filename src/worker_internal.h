/*-------------------------------------------------------------------------
 *
 * worker_internal.h
 *	  What the files of the sync worker share: claimed rows, shops,
 *	  requests, and the entry points of each part.
 *
 * The worker is split by job:
 *	 worker.c			lifecycle: shared memory, wake-ups, the main loop and
 *						recovery from errors
 *	 worker_claim.c		the worker's transactions on the queue: claim rows,
 *						record outcomes and attempts (saved plans, typed
 *						arrays)
 *	 worker_shops.c		the shop cache: credentials, token buckets, token
 *						refresh, the shop changes waiting to be written,
 *						and which shops are busy or idle
 *	 worker_dispatch.c	batches and requests: build, send, and handle each
 *						finished request after the HTTP drive returned
 *	 worker_direct.c	the claim's levels and lease and the record
 *						transaction's writes without SQL, where SQL would
 *						check nothing more
 *	 worker_orders.c	order fetches: claim, send, read and record them
 *	 worker_log.c		structured event records
 *
 * Memory ownership, which recovery from an ERROR relies on:
 *	 - a ClaimedRow waiting to be sent lives in rows_context, on its shop's
 *	   waiting list;
 *	 - a PushRequest owns a context holding its copies of the rows it
 *	   carries, its pushes and its request; it is on the in-flight list from
 *	   its creation until its outcome is recorded and the context deleted;
 *	 - outcomes and attempts waiting to be written live in record_context;
 *	 - a ClaimedFetch waiting to be sent lives in rows_context, on its
 *	   shop's fetch list; a request fetching it holds a copy in its own
 *	   context; fetch outcomes waiting to be written live in their own
 *	   context (worker_orders.c);
 *	 - a ShopState lives in the shop cache, its strings in a context of its
 *	   own, from its first claimed row or fetch until it has been idle for
 *	   invsync.idle_shop_retention; only a request in flight (which keeps
 *	   it busy) and the busy and idle lists point at it.
 * After an ERROR, transfers are aborted first (http_engine_abort_all),
 * then requests, rows and records are freed; leases bring the rows back.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/worker_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVSYNC_WORKER_INTERNAL_H
#define INVSYNC_WORKER_INTERNAL_H

#include "postgres.h"

#include "executor/spi.h"
#include "lib/ilist.h"
#include "portability/instr_time.h"
#include "utils/timestamp.h"

#include "adapter.h"
#include "http.h"

/* refresh an access token this long before it expires */
#define TOKEN_REFRESH_MARGIN_MS (5 * 60 * 1000)
/* the largest batch of any adapter, for the claim's per-shop share */
#define MAX_ADAPTER_BATCH 100

/* a claimed queue row, from its claim until its outcome is recorded */
typedef struct ClaimedRow
{
	dlist_node	node;
	int64		tenant_id;
	int64		listing_id;
	int64		shop_id;
	int64		version;
	int64		level;
	int			attempts;
	bool		auth_retried;	/* already resent once after a refresh */
	bool		alone;			/* its request was refused as a whole: sent
								 * again with its siblings only */
	TimestampTz send_by;		/* sent later, its request could outlive the
								 * lease and overlap a new claim's */
	char	   *correlation_ids;	/* comma-separated, for the header */
	char	   *sibling_key;	/* rows with one key go together; or NULL */
	char	   *ids[LISTING_MAX_ATTRIBUTES];	/* the adapter's attributes'
												 * values in external_ids, by
												 * index; NULL when absent */
} ClaimedRow;

/*
 * A claimed order fetch, from its claim until its outcome is queued: in
 * rows_context on its shop's fetch list, then copied into its request.
 */
typedef struct ClaimedFetch
{
	dlist_node	node;
	int64		tenant_id;
	int64		shop_id;
	char	   *order_id;
	int64		version;
	int			attempts;
	bool		auth_retried;	/* already resent once after a refresh */
	TimestampTz send_by;		/* as for rows: within the lease */
	char	   *correlation_ids;	/* comma-separated, for the header */
} ClaimedFetch;

typedef struct ShopKey
{
	int64		tenant_id;
	int64		shop_id;
} ShopKey;

/*
 * Tokens or a refresh failure the worker learnt but could not write yet
 * (an application held the shop's row): kept, and written at a later turn.
 */
typedef struct UnsavedShopChange
{
	bool		tokens;			/* refreshed tokens to store */
	bool		failure;		/* a failed refresh to record */
	bool		reauthorize;
	char	   *spent_refresh_token;
	char	   *access_token;
	char	   *refresh_token;
	TimestampTz access_expires_at;
	TimestampTz refresh_expires_at; /* 0: unknown */
	char	   *error;
	TimestampTz next_try;
	int			tries;
} UnsavedShopChange;

/* what the worker knows of a shop; the key must come first (hash entry) */
/* the list of worker_shops.c a cached shop is on */
typedef enum ShopListing
{
	SHOP_UNLISTED,				/* just created, about to be busy */
	SHOP_BUSY,					/* something waiting or in flight */
	SHOP_IDLE					/* nothing to do: kept a while */
} ShopListing;

typedef struct ShopState
{
	ShopKey		key;
	MemoryContext context;		/* the strings of ctx and unsaved */
	const ChannelAdapter *adapter;
	ShopContext ctx;
	double		rate;			/* requests per second */
	int			max_in_flight;
	int			batch_size;		/* listings per stock update */
	TimestampTz access_expires_at;
	double		tokens;			/* token bucket */
	TimestampTz tokens_at;
	TimestampTz paused_until;	/* throttled by the marketplace */
	int			in_flight;
	int			rows_in_flight; /* listings of its stock updates in flight */
	bool		refreshing;
	bool		needs_refresh;
	TimestampTz next_refresh_try;	/* the row was busy: not before this */
	UnsavedShopChange unsaved;
	dlist_head	waiting;		/* ClaimedRow, to send */
	dlist_head	fetches;		/* ClaimedFetch, to send */
	ShopListing listed;			/* on which list of worker_shops.c */
	dlist_node	list_node;
	TimestampTz idle_since;		/* on the idle list: since when */
} ShopState;

/* one request in flight, owning everything it points to */
typedef struct PushRequest
{
	dlist_node	node;			/* on the in-flight list */
	MemoryContext context;
	ShopState  *shop;
	bool		is_refresh;
	int			nrows;
	int			room;			/* of rows and pushes */
	ClaimedRow *rows;			/* copies, in context */
	ListingPush *pushes;
	ClaimedFetch *fetch;		/* an order fetch: its copy, in context */
	HttpRequestSpec spec;
	char	   *log_url;		/* spec's URL with its secrets redacted */
	char	   *correlation_header;
	char	   *spent_refresh_token;
	TimestampTz started;
} PushRequest;

/* one outcome waiting to be recorded */
typedef struct PendingOutcome
{
	int64		tenant_id;
	int64		listing_id;
	int64		version;
	int64		level;
	const char *outcome;		/* static string */
	int64		due_in_ms;
	char	   *error_class;
	char	   *error;
} PendingOutcome;

/* one attempt waiting to be recorded */
typedef struct PendingAttempt
{
	int64		tenant_id;
	int64		shop_id;
	char	   *channel;
	const char *kind;			/* static string */
	int			nrows;
	int64	   *listing_ids;
	int64	   *versions;
	int64	   *levels;
	char	   *correlation_id;
	char	   *request_url;
	long		http_status;	/* 0: none */
	const char *outcome;		/* static string */
	char	   *error_class;
	char	   *error_message;
	char	   *request_id;
	double		latency_ms;
	TimestampTz started_at;
} PendingAttempt;

/* worker_direct.c */
extern bool record_directly(const PendingOutcome *outcomes, int noutcomes,
							const PendingAttempt *attempts, int nattempts,
							TimestampTz now, int *held);

/*
 * What the sync worker has done since it started, for the view
 * invsync.worker_activity.  The worker counts in its own copy and
 * publishes it to shared memory after each claim and record transaction.
 */
typedef struct WorkerActivity
{
	int			pid;			/* 0 while no sync worker runs */
	TimestampTz started_at;
	int64		claims;			/* claim transactions that ran the claim */
	int64		claimed_rows;
	int64		claim_us;		/* their time, commit included */
	TimestampTz last_claim_at;
	int64		records;		/* record transactions */
	int64		recorded_outcomes;
	int64		record_us;
	int64		requests;		/* requests answered or failed */
	int			in_flight;
	int			cached_shops;
} WorkerActivity;

/* worker.c */
extern WorkerActivity worker_activity;
extern void publish_activity(void);
extern int64 microseconds_since(instr_time start);
extern HttpEngine *worker_engine;
extern MemoryContext rows_context;
extern TimestampTz next_dispatch;
extern void begin_work(const char *activity);
extern void end_work(void);
extern SPIPlanPtr keep_plan(SPIPlanPtr *plan, const char *sql, int nargs,
							Oid *types);
extern void execute_plan(SPIPlanPtr plan, Datum *values, const char *nulls,
						 int expected);
extern Datum interval_ms_datum(int64 ms);

/* worker_log.c */
extern void log_event(int elevel, const char *event, const char *correlation_id,
					  const ShopState *shop, const char *listings, int attempt,
					  long http_status, double latency_ms, const char *error);

extern void log_order_event(int elevel, const char *event,
							const char *correlation_id, const ShopState *shop,
							const char *order_id, int attempt, long http_status,
							double latency_ms, const char *error);

/* worker_orders.c */
extern int	fetches_held;
extern void orders_init(void);
extern void claim_order_fetches(TimestampTz now, int64 send_window);
extern bool start_order_fetch(ShopState *shop);
extern void order_fetch_done(PushRequest *request, const HttpResult *result);
extern void fail_waiting_fetches(ShopState *shop, bool reauthorize,
								 const char *error);
extern void forget_fetch(ClaimedFetch *fetch);
extern long fetch_record_wait_ms(TimestampTz now);
extern void flush_fetch_records(void);
extern void reset_fetches(void);

/* worker_claim.c */
extern bool extension_present;
extern bool claim_found_rows;
extern int	rows_held;
extern void claim_init(void);
extern bool check_extension(void);
extern void claim_rows(void);
extern void forget_row(ClaimedRow *row);
extern void add_outcome(const ClaimedRow *row, const char *outcome,
						int64 due_in_ms, const char *error_class,
						const char *error);
extern void add_attempt(const PushRequest *request, long http_status,
						const char *outcome, const char *error_class,
						const char *error, const char *request_id,
						double latency_ms);
extern bool records_pending(void);
extern long record_wait_ms(TimestampTz now);
extern void flush_records(void);
extern Datum text_or_null(const char *value, bool *isnull);
extern Datum int64_array(const int64 *values, int n);
extern void reset_records(void);
extern void purge_attempts(void);
extern void claim_forget_worker_start(void);

/* worker_shops.c */
extern void shops_init(void);
extern dlist_head *busy_shops(void);
extern void shop_wait(ShopState *shop, dlist_head *list, dlist_node *node,
					  bool first);
extern void move_if_idle(ShopState *shop);
extern int	cached_shop_count(void);
extern void forget_idle_shops(void);
extern void refill_tokens(ShopState *shop, TimestampTz now);
extern ShopState *get_shop(int64 tenant_id, int64 shop_id);
extern void load_shop(ShopState *shop);
extern void reload_claimed_shops(void);
extern char *take_refresh_lease(ShopState *shop);
extern void shop_store_tokens(ShopState *shop, const char *spent_refresh_token,
							  const TokenRefreshResult *refresh);
extern void shop_refresh_failed(ShopState *shop, bool reauthorize,
								const char *error);
extern void save_shop_changes(void);
extern void reset_shops(void);

/* worker_dispatch.c */
extern PushRequest *new_request(ShopState *shop);
extern void dispatch(void);
extern void handle_finished(void);
extern void abort_requests(void);
extern int64 backoff_ms(int attempts, int retry_after_ms);

#endif							/* INVSYNC_WORKER_INTERNAL_H */
