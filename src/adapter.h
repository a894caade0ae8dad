/*-------------------------------------------------------------------------
 *
 * adapter.h
 *	  The interface every marketplace adapter implements, and the rules the
 *	  engine applies for all of them.
 *
 * A channel is one file under adapters/ defining a ChannelAdapter, plus
 * its entry in the registry (src/adapter.c).  The adapter declares what
 * the engine must know of the marketplace as data: the identifiers of its
 * listings (stored in listings.external_ids), which listings may share a
 * request and which must travel together, its batch sizes and its hosts.
 * Its functions build fully signed requests and read the answers; the
 * engine (src/worker*.c, src/http.c) sends them, redacts what the adapter
 * marked secret, and records the outcomes.
 *
 * Adapters never touch the database and never raise an ERROR for anything
 * a remote server sends: malformed or unexpected answers become outcomes.
 * All memory an adapter returns is palloc'd in the caller's current memory
 * context, which the engine frees with the request.
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

#include "json.h"

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

/* ----------------------------------------------------------------
 * Listing identifiers
 * ----------------------------------------------------------------
 */

/* most identifier attributes a channel may declare */
#define LISTING_MAX_ATTRIBUTES	4
/* longest identifier value, in bytes */
#define LISTING_ID_MAX_LEN		128

/*
 * The generic columns of invsync.listings an attribute is mirrored in, so
 * that every channel's listings can be found, shown and kept unique the
 * same way: the marketplace's product, its variant, and the warehouse.
 */
typedef enum ListingSlot
{
	LISTING_SLOT_NONE = 0,
	LISTING_SLOT_ITEM,			/* external_item_id */
	LISTING_SLOT_VARIANT,		/* external_model_id */
	LISTING_SLOT_LOCATION		/* external_location_id */
} ListingSlot;

typedef enum ListingIdKind
{
	LISTING_ID_TEXT,			/* printable text, no control characters */
	LISTING_ID_INTEGER			/* a non-negative decimal int64, stored
								 * without leading zeros */
} ListingIdKind;

/* One identifier attribute of a channel's listings. */
typedef struct ListingAttribute
{
	const char *name;			/* key in listings.external_ids */
	ListingSlot slot;
	ListingIdKind kind;
	bool		required;
	const char *default_value;	/* stored when absent, or NULL */
} ListingAttribute;

/* a set of attributes, as bits (1 << index in the adapter's list) */
typedef uint32 ListingAttributeSet;

#define LISTING_ATTRIBUTE(index)	((ListingAttributeSet) 1 << (index))

/* One listing in a batch: its level, and what became of it. */
typedef struct ListingPush
{
	int64		listing_id;
	/* values of the adapter's attributes, by index; NULL when absent */
	const char *ids[LISTING_MAX_ATTRIBUTES];
	int64		level;			/* absolute stock to publish */

	/* filled in by the parse functions */
	SyncOutcome outcome;
	int64		read_level;		/* parse_read_levels: the marketplace's
								 * level, -1 if it gave none */
	char		error_code[SYNC_ERROR_CODE_LEN];
	char		error_message[SYNC_ERROR_MESSAGE_LEN];
} ListingPush;

/* ----------------------------------------------------------------
 * Shops, requests and responses
 * ----------------------------------------------------------------
 */

/*
 * The shop a request is for, with the credentials of its app.  Secrets are
 * here only because signing needs them; an adapter must never copy them
 * into an unredacted request part, an error message or anything else that
 * leaves the process.
 */
typedef struct ShopContext
{
	int64		tenant_id;
	int64		shop_id;		/* invsync's own id */
	const char *channel;		/* "shopee", "tiktok", ... */
	const char *external_shop_id;	/* Shopee shop_id, TikTok shop cipher,
									 * Lazada seller id */
	const char *region;			/* may be NULL */
	const char *app_key;		/* Shopee partner_id, TikTok/Lazada app key */
	const char *app_secret;		/* Shopee partner_key, TikTok/Lazada secret */
	const char *access_token;	/* may be NULL when none was issued yet */
	const char *refresh_token;	/* may be NULL */
	const char *api_base_url;	/* scheme://host[:port][/prefix]: the app's
								 * override or the adapter's host */
	const char *auth_base_url;	/* the same, for token calls */
	bool		uses_locations; /* shop has warehouses: send location ids */
} ShopContext;

/* most query parameters and headers one request may carry */
#define HTTP_MAX_PARAMS		16
#define HTTP_MAX_HEADERS	8

/*
 * A query parameter or header.  A secret one (a token, a signature, an app
 * secret) is sent as is and shown as "[redacted]" wherever the request is
 * logged or recorded.
 */
typedef struct HttpParam
{
	const char *name;
	const char *value;
	bool		secret;
} HttpParam;

/* A fully built and signed request. */
typedef struct HttpRequestSpec
{
	const char *method;			/* "POST" or "GET" (static string) */
	char	   *base;			/* scheme://host[:port][/prefix]/path */
	int			nquery;
	HttpParam	query[HTTP_MAX_PARAMS]; /* in the order sent */
	int			nheaders;
	HttpParam	headers[HTTP_MAX_HEADERS];
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
	const char *headers;		/* "Name: value\r\n" lines, NUL-terminated,
								 * bounded; may be NULL */
} HttpResponseView;

/* What a call as a whole came to. */
typedef struct CallResult
{
	SyncOutcome outcome;		/* for listings the adapter left undecided */
	int			retry_after_ms; /* hint from the marketplace, 0 if none */
	char		request_id[SYNC_REQUEST_ID_LEN];	/* marketplace request id */
	char		error_code[SYNC_ERROR_CODE_LEN];
	char		error_message[SYNC_ERROR_MESSAGE_LEN];	/* no secrets */
} CallResult;

/* New credentials from a token refresh. */
typedef struct TokenRefreshResult
{
	CallResult	call;			/* OK, RETRY/THROTTLED (try later) or
								 * PERMANENT (re-authorisation needed) */
	char	   *access_token;
	char	   *refresh_token;	/* the one to keep: the rotated one, or the
								 * old one again */
	int64		access_expires_at;	/* Unix seconds */
	int64		refresh_expires_at; /* Unix seconds, 0 if unknown */
} TokenRefreshResult;

/* ----------------------------------------------------------------
 * Webhooks and orders
 * ----------------------------------------------------------------
 */

/* most bytes of a push body invsync reads */
#define WEBHOOK_MAX_BODY		(256 * 1024)

/* What a marketplace push is about. */
typedef enum WebhookKind
{
	WEBHOOK_IGNORED = 0,		/* nothing invsync acts on */
	WEBHOOK_ORDER,				/* an order changed: fetch it and apply it */
	WEBHOOK_STOCK				/* the marketplace's stock of a listing moved */
} WebhookKind;

/* A push as received. */
typedef struct WebhookRequest
{
	const char *url;			/* the URL the marketplace posted to, or NULL */
	const char *body;			/* the raw bytes, as signed */
	size_t		body_len;
	const char *signature;		/* the header carrying the signature, or NULL */
} WebhookRequest;

/* A push, read; strings in the caller's context. */
typedef struct WebhookEvent
{
	WebhookKind kind;
	char	   *shop_key;		/* the shop as the push names it; NULL for
								 * an app-level push */
	char	   *event_key;		/* the push's identity (marketplace-apis.md
								 * section 7.8): a re-delivery has the same */
	char	   *event_type;		/* what the marketplace calls it */
	char	   *order_id;		/* ORDER: the order (Lazada: order/line) */
	char	   *status;			/* ORDER: the status pushed */
	int64		update_time;	/* ORDER: Unix seconds of the change, 0 if
								 * unknown */
	const char *ids[LISTING_MAX_ATTRIBUTES];	/* STOCK: the listing */
} WebhookEvent;

/* The stock effect of an order status (marketplace-apis.md section 7.7). */
typedef enum OrderEffect
{
	ORDER_EFFECT_NONE = 0,		/* no automatic change (returns, unknown) */
	ORDER_EFFECT_RESERVE,		/* alive, the goods still with the seller */
	ORDER_EFFECT_FULFILL,		/* the carrier has the parcel */
	ORDER_EFFECT_RELEASE		/* cancelled before that */
} OrderEffect;

typedef struct OrderStatus
{
	const char *status;			/* as the marketplace spells it */
	OrderEffect effect;
	int			rank;			/* orders two statuses of one second */
} OrderStatus;

/* most lines of one fetched order invsync reads */
#define ORDER_MAX_LINES			1000

/* One line of a fetched order: the listing, by the adapter's attributes. */
typedef struct OrderLine
{
	const char *ids[LISTING_MAX_ATTRIBUTES];	/* NULL when not given */
	int64		qty;
} OrderLine;

/* A fetched order, as parse_order_fetch read it; strings in the caller's context. */
typedef struct OrderDetail
{
	CallResult	call;			/* OK: status, update_time and lines are set */
	char	   *status;			/* as the marketplace spells it */
	int64		update_time;	/* Unix seconds of its last change */
	int			nlines;
	OrderLine  *lines;
} OrderDetail;

/* ----------------------------------------------------------------
 * The adapter
 * ----------------------------------------------------------------
 */
typedef struct ChannelAdapter
{
	const char *channel;

	/* identifiers of a listing; see ListingAttribute */
	const ListingAttribute *attributes;
	int			nattributes;

	/*
	 * Listings in one stock update agree on these attributes (Shopee: the
	 * item; TikTok: the product; Lazada: none).  Two listings with the same
	 * value of every attribute never share a request.
	 */
	ListingAttributeSet batch_by;

	/*
	 * Listings agreeing on these attributes are claimed, sent and settled
	 * together, all or none (TikTok: every warehouse of a SKU must be in
	 * the call).  0 when each listing stands alone.  It includes every
	 * attribute of batch_by, so that a group never spans batch keys (the
	 * claim sorts once, by batch key then sibling key; sql/channels checks
	 * it).
	 */
	ListingAttributeSet siblings_by;

	/* listings per stock update: the default, and the most an app may set */
	int			default_batch;
	int			max_batch;

	/* listings per read of levels, which agree on read_by */
	int			max_read_batch;
	ListingAttributeSet read_by;

	/* the production API host for a shop's region (region may be NULL) */
	const char *(*api_base_url) (const char *region);

	/* the production host of token calls; NULL: the API host */
	const char *auth_base_url;

	/* build the signed stock update for items[0..nitems-1] */
	void		(*build_push) (const ShopContext *shop,
							   const ListingPush *items, int nitems,
							   int64 now_ms, HttpRequestSpec *request);

	/*
	 * Classify a response (status != 0) for each listing of the batch and
	 * for the call as a whole.  Listings it leaves at SYNC_OUTCOME_NONE take
	 * result->outcome.
	 */
	void		(*parse_push) (const ShopContext *shop,
							   ListingPush *items, int nitems,
							   const HttpResponseView *response,
							   CallResult *result);

	/* build the signed request reading the levels of items[0..nitems-1] */
	void		(*build_read_levels) (const ShopContext *shop,
									  const ListingPush *items, int nitems,
									  int64 now_ms, HttpRequestSpec *request);

	/* set read_level (and outcome) of each listing from the response */
	void		(*parse_read_levels) (const ShopContext *shop,
									  ListingPush *items, int nitems,
									  const HttpResponseView *response,
									  CallResult *result);

	/*
	 * Build the signed request reading one order (its status and lines);
	 * order_id as invsync keys the order (Lazada: "order/line").  NULL for
	 * a channel that cannot fetch orders.
	 */
	void		(*build_order_fetch) (const ShopContext *shop,
									  const char *order_id, int64 now_ms,
									  HttpRequestSpec *request);

	/*
	 * Read the answer (status != 0): out->call.outcome OK with the order's
	 * status, update time and lines; PERMANENT when the marketplace does
	 * not know the order or the answer can never be read.
	 */
	void		(*parse_order_fetch) (const ShopContext *shop,
									  const char *order_id,
									  const HttpResponseView *response,
									  OrderDetail *out);

	/* build the token-refresh request for the shop */
	void		(*build_refresh) (const ShopContext *shop, int64 now_ms,
								  HttpRequestSpec *request);

	/* read a token-refresh response (status != 0) */
	void		(*parse_refresh) (const ShopContext *shop,
								  const HttpResponseView *response,
								  TokenRefreshResult *result);

	/*
	 * Read a push (before its signature is checked: the shop it names
	 * decides the key).  False, with *why set, when the body is not a push
	 * of this marketplace.
	 */
	bool		(*parse_webhook) (const WebhookRequest *request,
								  WebhookEvent *event, const char **why);

	/*
	 * Is the push signed with this app's key?  secret is the app's push
	 * secret (or its app secret).  Compares in constant time.
	 */
	bool		(*verify_webhook) (const char *app_key, const char *secret,
								   const WebhookRequest *request);

	/* the request header that carries a push's signature */
	const char *webhook_signature_header;

	/* the order statuses the marketplace pushes and returns, and their effect */
	const OrderStatus *order_statuses;
	int			norder_statuses;
} ChannelAdapter;

/* the registry: NULL when the channel has no adapter */
extern const ChannelAdapter *adapter_for_channel(const char *channel);
extern const char *const *adapter_channel_names(void);

/* shared rules, for the engine, the adapters and the SQL hooks */
extern const char *sync_outcome_name(SyncOutcome outcome);
extern int	adapter_attribute_index(const ChannelAdapter *adapter,
									const char *name);
extern const char *adapter_check_id(const ListingAttribute *attribute,
									const char *value, bool check_kind);
extern bool adapter_check_listing(const ChannelAdapter *adapter,
								  ListingPush *item);
extern bool adapter_same_ids(const ChannelAdapter *adapter,
							 ListingAttributeSet set,
							 const ListingPush *a, const ListingPush *b);
extern bool adapter_batch_fits(const ChannelAdapter *adapter,
							   ListingAttributeSet batch_by,
							   const ListingPush *batch, int nbatch,
							   const ListingPush *candidate);
extern void adapter_resolve_hosts(const ChannelAdapter *adapter,
								  ShopContext *shop, const char *app_base_url,
								  const char *app_auth_base_url);
extern void adapter_settle_outcomes(ListingPush *items, int nitems,
									const CallResult *result);
extern void adapter_set_result(CallResult *result, SyncOutcome outcome,
							   const char *code, const char *message,
							   const ShopContext *shop);
extern void adapter_set_listing(ListingPush *item, SyncOutcome outcome,
								const char *code, const char *message,
								const ShopContext *shop);
extern void adapter_copy_message(char *dst, size_t dstsize, const char *src,
								 const ShopContext *shop);
extern bool adapter_contains_ci(const char *haystack, const char *needle);

extern const OrderStatus *adapter_order_status(const ChannelAdapter *adapter,
												const char *status);
extern bool adapter_signature_matches(const char *expected_hex,
									  const char *given);
extern void adapter_add_order_line(const ChannelAdapter *adapter,
								   OrderDetail *out, const char *const *ids,
								   int64 qty);
extern char *adapter_order_lines_json(const ChannelAdapter *adapter,
									  const OrderDetail *detail);

/* requests */
extern void request_init(HttpRequestSpec *request, const char *method,
						 const char *base_url, const char *path);
extern void request_add_query(HttpRequestSpec *request, const char *name,
							  const char *value, bool secret);
extern void request_add_header(HttpRequestSpec *request, const char *name,
							   const char *value, bool secret);
extern void request_set_body(HttpRequestSpec *request, char *body,
							 size_t body_len, const char *content_type);
extern char *request_url(const HttpRequestSpec *request, bool redacted);

/* responses */
extern char *response_header(const HttpResponseView *response,
							 const char *name);
extern const JsonValue *response_json(const ShopContext *shop,
									  const HttpResponseView *response,
									  CallResult *result);
extern int	retry_after_ms_from(const char *seconds_text);

#endif							/* INVSYNC_ADAPTER_H */
