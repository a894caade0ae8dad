/*-------------------------------------------------------------------------
 *
 * adapter.h
 *	  The interface every marketplace adapter implements.
 *
 * The sync engine (src/worker.c, src/http.c) knows nothing marketplace
 * specific: it hands an adapter a shop and a batch of listings, gets back a
 * fully signed HTTP request, sends it, and hands the response back to the
 * adapter to classify per listing.  Adapters never touch the database and
 * never raise ERRORs for anything a remote server sends: malformed or
 * unexpected answers become outcomes.  All memory an adapter returns is
 * palloc'd in the caller's current memory context, which the engine resets
 * once per request.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/adapter.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVSYNC_ADAPTER_H
#define INVSYNC_ADAPTER_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* What became of one listing's push, or of a whole call. */
typedef enum SyncOutcome
{
	SYNC_OUTCOME_NONE = 0,		/* not decided yet */
	SYNC_OUTCOME_OK,			/* marketplace accepted the level */
	SYNC_OUTCOME_RETRY,			/* transient: backoff and retry */
	SYNC_OUTCOME_THROTTLED,		/* rate limited: backoff, honour retry-after */
	SYNC_OUTCOME_AUTH,			/* token expired or invalid: refresh, retry once */
	SYNC_OUTCOME_PERMANENT		/* will never succeed as is: dead letter */
} SyncOutcome;

#define SYNC_ERROR_CODE_LEN		64
#define SYNC_ERROR_MESSAGE_LEN	256
#define SYNC_REQUEST_ID_LEN		128

/*
 * The shop a request is for, with the credentials of its app.  Secrets are
 * here only because signing needs them; an adapter must never copy them into
 * a log_url, an error message or anything else that leaves the process.
 */
typedef struct ShopContext
{
	int64		tenant_id;
	int64		shop_id;		/* invsync's own id */
	const char *channel;		/* "shopee", "tiktok", ... */
	const char *external_shop_id;	/* Shopee shop_id, TikTok shop cipher, ... */
	const char *region;			/* may be NULL */
	const char *app_key;		/* Shopee partner_id, TikTok/Lazada app key */
	const char *app_secret;		/* Shopee partner_key, TikTok/Lazada secret */
	const char *access_token;	/* may be NULL when none was issued yet */
	const char *refresh_token;	/* may be NULL */
	const char *base_url;		/* scheme://host[:port][/prefix], or NULL
								 * for the marketplace's production host,
								 * which the adapter chooses */
	bool		uses_locations; /* shop has warehouses: send location ids */
} ShopContext;

/* One listing's absolute level in a batch, and what became of it. */
typedef struct ListingPush
{
	int64		listing_id;
	const char *external_item_id;	/* Shopee item_id */
	const char *external_model_id;	/* Shopee model_id; NULL or "" means 0 */
	const char *external_location_id;	/* marketplace warehouse id, or NULL */
	int64		level;			/* absolute stock to publish */

	/* filled in by parse_stock_update */
	SyncOutcome outcome;
	char		error_code[SYNC_ERROR_CODE_LEN];
	char		error_message[SYNC_ERROR_MESSAGE_LEN];
} ListingPush;

/* A fully built and signed request. */
typedef struct HttpRequestSpec
{
	const char *method;			/* "POST" or "GET" (static string) */
	char	   *url;			/* full URL including the signed query */
	char	   *log_url;		/* the same URL with every secret replaced by
								 * "[redacted]": safe for logs and rows */
	char	   *body;			/* exact bytes to send (and that were signed);
								 * NULL for none */
	size_t		body_len;
	const char *content_type;	/* static string, or NULL */
} HttpRequestSpec;

/* A response as the engine received it. */
typedef struct HttpResponseView
{
	long		status;			/* HTTP status; 0 when no response arrived */
	const char *body;			/* not necessarily NUL-terminated */
	size_t		body_len;
	const char *retry_after;	/* Retry-After header value, or NULL */
} HttpResponseView;

/* What a stock-update call as a whole came to. */
typedef struct StockCallResult
{
	SyncOutcome outcome;		/* for listings the adapter left undecided */
	int			retry_after_ms; /* hint from the marketplace, 0 if none */
	char		request_id[SYNC_REQUEST_ID_LEN];	/* marketplace request id */
	char		error_code[SYNC_ERROR_CODE_LEN];
	char		error_message[SYNC_ERROR_MESSAGE_LEN];	/* no secrets */
} StockCallResult;

/* New credentials from a token refresh. */
typedef struct TokenRefreshResult
{
	SyncOutcome outcome;		/* OK, RETRY/THROTTLED (try later) or
								 * PERMANENT (re-authorisation needed) */
	char	   *access_token;
	char	   *refresh_token;	/* the rotated one; never the old */
	int64		access_expires_at;	/* Unix seconds */
	int64		refresh_expires_at; /* Unix seconds, 0 if unknown */
	char		request_id[SYNC_REQUEST_ID_LEN];
	char		error_code[SYNC_ERROR_CODE_LEN];
	char		error_message[SYNC_ERROR_MESSAGE_LEN];
} TokenRefreshResult;

typedef struct ChannelAdapter
{
	const char *channel;

	/* most listings one stock-update request may carry */
	int			max_batch;

	/*
	 * may a and b travel in one request (e.g. Shopee: same item_id)?  The
	 * relation need not be transitive: check a candidate against every
	 * listing already in the batch, not only the first.
	 */
	bool		(*can_batch) (const ListingPush *a, const ListingPush *b);

	/*
	 * Can this listing ever be sent (e.g. Shopee: are its ids integers)?  If
	 * not, set its outcome to PERMANENT with error_code and error_message and
	 * return false; the engine settles it without a call and leaves it out of
	 * every batch.  NULL means every listing can be sent.  build_stock_update
	 * skips such listings anyway and parse_stock_update marks them again.
	 */
	bool		(*check_listing) (ListingPush *item);

	/* build the signed stock update for items[0..nitems-1] */
	void		(*build_stock_update) (const ShopContext *shop,
									   const ListingPush *items, int nitems,
									   int64 now_seconds,
									   HttpRequestSpec *request);

	/*
	 * Classify a response (status != 0) for each listing of the batch, and
	 * for the call as a whole.  Listings it leaves at SYNC_OUTCOME_NONE take
	 * result->outcome.
	 */
	void		(*parse_stock_update) (const ShopContext *shop,
									   ListingPush *items, int nitems,
									   const HttpResponseView *response,
									   StockCallResult *result);

	/* build the signed token-refresh request for the shop */
	void		(*build_token_refresh) (const ShopContext *shop,
										int64 now_seconds,
										HttpRequestSpec *request);

	/* read a token-refresh response (status != 0) */
	void		(*parse_token_refresh) (const ShopContext *shop,
										const HttpResponseView *response,
										TokenRefreshResult *result);
} ChannelAdapter;

/* the adapters, one per file under adapters/ */
extern const ChannelAdapter shopee_adapter;

/* NULL when the channel has no adapter (yet) */
extern const ChannelAdapter *adapter_for_channel(const char *channel);

/* rules shared by the engine, the adapters and the SQL test hooks */
extern const char *sync_outcome_name(SyncOutcome outcome);
extern bool adapter_check_listing(const ChannelAdapter *adapter,
								  ListingPush *item);
extern void adapter_settle_outcomes(ListingPush *items, int nitems,
									const StockCallResult *result);
extern void adapter_copy_message(char *dst, size_t dstsize, const char *src,
								 const ShopContext *shop);
extern int	adapter_retry_after_ms(const char *header);

#endif							/* INVSYNC_ADAPTER_H */
