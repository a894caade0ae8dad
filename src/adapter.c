/*-------------------------------------------------------------------------
 *
 * adapter.c
 *	  The adapter registry and the rules every channel shares: outcome
 *	  names, listing identifiers, settling the listings an adapter left
 *	  undecided, building requests with their secrets marked, reading
 *	  responses (transport-level answers classified once for all), and
 *	  copying server-supplied messages safely.
 *
 * The sync engine and the SQL hooks (src/adapter_sql.c) both go through
 * these functions, so pg_regress exercises the same rules the worker
 * applies.  Nothing here raises an ERROR for anything a server sends.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/adapter.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "adapter.h"
#include "crypto.h"

/* longest Retry-After honoured, in seconds */
#define RETRY_AFTER_MAX_SECONDS		86400

/* secrets shorter than this are not searched for in messages */
#define REDACT_MIN_SECRET_LEN		8

#define REDACTED					"[redacted]"

/* the adapters, one per file under adapters/ */
extern const ChannelAdapter shopee_adapter;
extern const ChannelAdapter tiktok_adapter;
extern const ChannelAdapter tokopedia_adapter;
extern const ChannelAdapter lazada_adapter;

/*
 * The registry.  A channel named here is accepted by invsync.apps; its
 * adapter may be NULL while the channel is being built.
 */
typedef struct ChannelEntry
{
	const char *channel;
	const ChannelAdapter *adapter;
} ChannelEntry;

static const ChannelEntry channel_registry[] = {
	{"shopee", &shopee_adapter},
	{"tiktok", &tiktok_adapter},
	{"tokopedia", &tokopedia_adapter},
	{"lazada", &lazada_adapter},
};

static const char *const outcome_names[] = {
	[SYNC_OUTCOME_NONE] = "none",
	[SYNC_OUTCOME_OK] = "ok",
	[SYNC_OUTCOME_RETRY] = "retry",
	[SYNC_OUTCOME_THROTTLED] = "throttled",
	[SYNC_OUTCOME_AUTH] = "auth",
	[SYNC_OUTCOME_PERMANENT] = "permanent"
};

static void redact_secret(StringInfo text, const char *secret);

/*
 * The adapter for a channel name ("shopee", ...), or NULL when the channel
 * has none.  Names are matched exactly, as stored in invsync's tables.
 */
const ChannelAdapter *
adapter_for_channel(const char *channel)
{
	int			i;

	if (channel == NULL)
		return NULL;
	for (i = 0; i < lengthof(channel_registry); i++)
	{
		if (strcmp(channel, channel_registry[i].channel) == 0)
			return channel_registry[i].adapter;
	}
	return NULL;
}

/* the channel names of the registry, NULL-terminated */
const char *const *
adapter_channel_names(void)
{
	static const char *names[lengthof(channel_registry) + 1];
	int			i;

	for (i = 0; i < lengthof(channel_registry); i++)
		names[i] = channel_registry[i].channel;
	names[i] = NULL;
	return names;
}

/*
 * The name under which an outcome is stored and shown: "ok", "retry",
 * "throttled", "auth", "permanent" (and "none" for undecided).
 */
const char *
sync_outcome_name(SyncOutcome outcome)
{
	if ((int) outcome < 0 || (int) outcome >= (int) lengthof(outcome_names))
		return "none";
	return outcome_names[outcome];
}

/* the index of an attribute in the adapter's list, or -1 */
int
adapter_attribute_index(const ChannelAdapter *adapter, const char *name)
{
	int			i;

	for (i = 0; i < adapter->nattributes; i++)
	{
		if (strcmp(adapter->attributes[i].name, name) == 0)
			return i;
	}
	return -1;
}

/*
 * Why value cannot be a value of the attribute, or NULL when it can.
 * NULL and "" mean absent, which only a required attribute without a
 * default refuses.  With check_kind, integers must be canonical (no sign,
 * no leading zero): the engine compares ids as strings.  Listings are
 * stored without that check (an id the marketplace will refuse is still a
 * listing an application may want to record), and the engine refuses
 * them when they are sent, as dead letters naming the attribute.
 */
const char *
adapter_check_id(const ListingAttribute *attribute, const char *value,
				 bool check_kind)
{
	const unsigned char *p;
	int64		number;

	if (value == NULL || value[0] == '\0')
	{
		if (attribute->required && attribute->default_value == NULL)
			return "is required";
		return NULL;
	}
	if (strlen(value) > LISTING_ID_MAX_LEN)
		return "is longer than 128 bytes";
	for (p = (const unsigned char *) value; *p != '\0'; p++)
	{
		if (*p < 0x20 || *p == 0x7F)
			return "contains a control character";
	}
	if (check_kind && attribute->kind == LISTING_ID_INTEGER)
	{
		if (value[0] == '-' || value[0] == '+' ||
			!json_parse_int64_text(value, &number) ||
			(value[0] == '0' && value[1] != '\0'))
			return "must be a non-negative decimal integer without leading zeros";
	}
	return NULL;
}

/*
 * Can this listing be sent at all?  Its ids were checked when stored, but
 * a row stored by an older version, or written past the checks, might not
 * pass: settle it as PERMANENT, naming the attribute, and return false.
 */
bool
adapter_check_listing(const ChannelAdapter *adapter, ListingPush *item)
{
	int			i;

	for (i = 0; i < adapter->nattributes; i++)
	{
		const ListingAttribute *attribute = &adapter->attributes[i];
		const char *why = adapter_check_id(attribute, item->ids[i], true);

		if (why != NULL)
		{
			char		message[SYNC_ERROR_MESSAGE_LEN];

			snprintf(message, sizeof(message), "%s %s %s",
					 adapter->channel, attribute->name, why);
			adapter_set_listing(item, SYNC_OUTCOME_PERMANENT,
								"invalid_listing_id", message, NULL);
			return false;
		}
	}
	return true;
}

/* do a and b have the same value (absent equals absent) of every attribute in set? */
bool
adapter_same_ids(const ChannelAdapter *adapter, ListingAttributeSet set,
				 const ListingPush *a, const ListingPush *b)
{
	int			i;

	for (i = 0; i < adapter->nattributes; i++)
	{
		const char *va = a->ids[i] ? a->ids[i] : "";
		const char *vb = b->ids[i] ? b->ids[i] : "";

		if ((set & LISTING_ATTRIBUTE(i)) && strcmp(va, vb) != 0)
			return false;
	}
	return true;
}

/*
 * May candidate join the listings of batch in one request?  It must agree
 * with them on batch_by (the adapter's batch_by or read_by), and no listing
 * may be there already with the same value of every attribute: the
 * marketplace would see one object twice.
 */
bool
adapter_batch_fits(const ChannelAdapter *adapter, ListingAttributeSet batch_by,
				   const ListingPush *batch, int nbatch,
				   const ListingPush *candidate)
{
	ListingAttributeSet all = LISTING_ATTRIBUTE(adapter->nattributes) - 1;
	int			i;

	if (nbatch > 0 && !adapter_same_ids(adapter, batch_by, &batch[0], candidate))
		return false;
	for (i = 0; i < nbatch; i++)
	{
		if (adapter_same_ids(adapter, all, &batch[i], candidate))
			return false;
	}
	return true;
}

/*
 * Fill in the shop's hosts: the app's base URL, or the adapter's
 * production host for the shop's region; for token calls the app's auth
 * base URL, else the adapter's auth host, else the API host (as chosen).
 * api_base_url stays NULL when the adapter knows no host for the region.
 */
void
adapter_resolve_hosts(const ChannelAdapter *adapter, ShopContext *shop,
					  const char *app_base_url, const char *app_auth_base_url)
{
	shop->api_base_url = app_base_url ? app_base_url :
		adapter->api_base_url(shop->region);
	if (app_auth_base_url != NULL)
		shop->auth_base_url = app_auth_base_url;
	else if (adapter->auth_base_url != NULL)
		shop->auth_base_url = adapter->auth_base_url;
	else
		shop->auth_base_url = shop->api_base_url;
}

/*
 * Give every listing an adapter left at SYNC_OUTCOME_NONE the call's
 * outcome and, unless it has a reason of its own, the call's error code and
 * message.  An adapter that decided nothing at all is a bug, but a
 * transient one from the listings' point of view: they are retried.
 */
void
adapter_settle_outcomes(ListingPush *items, int nitems,
						const CallResult *result)
{
	int			i;

	for (i = 0; i < nitems; i++)
	{
		ListingPush *item = &items[i];

		if (item->outcome != SYNC_OUTCOME_NONE)
			continue;
		if (result->outcome != SYNC_OUTCOME_NONE)
			item->outcome = result->outcome;
		else
		{
			item->outcome = SYNC_OUTCOME_RETRY;
			if (item->error_code[0] == '\0')
			{
				strlcpy(item->error_code, "undecided", SYNC_ERROR_CODE_LEN);
				strlcpy(item->error_message,
						"the adapter decided no outcome for this listing",
						SYNC_ERROR_MESSAGE_LEN);
			}
			continue;
		}
		if (item->error_code[0] == '\0')
		{
			strlcpy(item->error_code, result->error_code, SYNC_ERROR_CODE_LEN);
			strlcpy(item->error_message, result->error_message,
					SYNC_ERROR_MESSAGE_LEN);
		}
	}
}

/*
 * Replace every occurrence of secret in text by "[redacted]".
 */
static void
redact_secret(StringInfo text, const char *secret)
{
	size_t		secret_len;
	char	   *hit;
	StringInfoData out;
	const char *from;

	if (secret == NULL)
		return;
	secret_len = strlen(secret);
	if (secret_len < REDACT_MIN_SECRET_LEN ||
		strstr(text->data, secret) == NULL)
		return;

	initStringInfo(&out);
	from = text->data;
	while ((hit = strstr(from, secret)) != NULL)
	{
		appendBinaryStringInfo(&out, from, hit - from);
		appendStringInfoString(&out, "[redacted]");
		from = hit + secret_len;
	}
	appendStringInfoString(&out, from);

	resetStringInfo(text);
	appendBinaryStringInfo(text, out.data, out.len);
	pfree(out.data);
}

/*
 * Copy a message that came from a marketplace (or is about to be stored
 * next to one) into a fixed-size outcome field: the shop's secrets, should
 * a server ever echo one, become "[redacted]"; control characters become
 * spaces; invalid UTF-8, and any non-ASCII character when the database is
 * not UTF-8, becomes "?"; and the result is cut at a character boundary so
 * it can be stored as text in any database.  src may be NULL; shop may be
 * NULL when there is no shop to redact.
 */
void
adapter_copy_message(char *dst, size_t dstsize, const char *src,
					 const ShopContext *shop)
{
	StringInfoData text;
	bool		utf8_db = GetDatabaseEncoding() == PG_UTF8;
	size_t		out = 0;
	int			i;

	if (dstsize == 0)
		return;
	dst[0] = '\0';
	if (src == NULL)
		return;

	initStringInfo(&text);
	appendStringInfoString(&text, src);
	if (shop != NULL)
	{
		redact_secret(&text, shop->app_secret);
		redact_secret(&text, shop->access_token);
		redact_secret(&text, shop->refresh_token);
	}

	i = 0;
	while (i < text.len)
	{
		const unsigned char *p = (const unsigned char *) text.data + i;
		int			charlen = 1;
		char		replacement = 0;

		if (*p < 0x20 || *p == 0x7F)
			replacement = ' ';
		else if (*p >= 0x80)
		{
			charlen = pg_utf_mblen(p);
			if (charlen > text.len - i || !pg_utf8_islegal(p, charlen))
				charlen = 1;	/* skip one byte of garbage */
			if (!utf8_db || charlen == 1)
				replacement = '?';
		}

		if (replacement != 0)
		{
			if (out + 1 >= dstsize)
				break;
			dst[out++] = replacement;
		}
		else
		{
			if (out + charlen >= dstsize)
				break;
			memcpy(dst + out, p, charlen);
			out += charlen;
		}
		i += charlen;
	}
	dst[out] = '\0';
	pfree(text.data);
}

/*
 * Set the outcome, code and message of a call; the message is copied with
 * adapter_copy_message (shop may be NULL).
 */
void
adapter_set_result(CallResult *result, SyncOutcome outcome, const char *code,
				   const char *message, const ShopContext *shop)
{
	result->outcome = outcome;
	adapter_copy_message(result->error_code, SYNC_ERROR_CODE_LEN, code, shop);
	adapter_copy_message(result->error_message, SYNC_ERROR_MESSAGE_LEN,
						 message, shop);
}

/* the same, for one listing */
void
adapter_set_listing(ListingPush *item, SyncOutcome outcome, const char *code,
					const char *message, const ShopContext *shop)
{
	item->outcome = outcome;
	adapter_copy_message(item->error_code, SYNC_ERROR_CODE_LEN, code, shop);
	adapter_copy_message(item->error_message, SYNC_ERROR_MESSAGE_LEN,
						 message, shop);
}

/* the adapter's entry for an order status, or NULL when it has none */
const OrderStatus *
adapter_order_status(const ChannelAdapter *adapter, const char *status)
{
	int			i;

	if (status == NULL)
		return NULL;
	for (i = 0; i < adapter->norder_statuses; i++)
	{
		if (strcmp(adapter->order_statuses[i].status, status) == 0)
			return &adapter->order_statuses[i];
	}
	return NULL;
}

/*
 * Does a signature header carry the expected hex digest?  Hex is compared
 * without regard to case (the marketplaces document lower case; be lenient
 * on input), in time that does not depend on where the strings differ;
 * surrounding blanks are ignored.
 */
bool
adapter_signature_matches(const char *expected_hex, const char *given)
{
	size_t		len = strlen(expected_hex);
	size_t		given_len;
	unsigned char diff = 0;
	size_t		i;

	if (given == NULL)
		return false;
	while (*given == ' ' || *given == '\t')
		given++;
	given_len = strlen(given);
	while (given_len > 0 && (given[given_len - 1] == ' ' ||
							 given[given_len - 1] == '\t' ||
							 given[given_len - 1] == '\r' ||
							 given[given_len - 1] == '\n'))
		given_len--;
	if (given_len != len)
		return false;
	for (i = 0; i < len; i++)
		diff |= (unsigned char) (pg_ascii_tolower((unsigned char) expected_hex[i]) ^
								 pg_ascii_tolower((unsigned char) given[i]));
	return diff == 0;
}

/*
 * Add qty of a listing to a fetched order's lines: to the line with the
 * same ids when there is one (TikTok and Lazada give one entry per unit),
 * else as a new line.  ids[] holds a value per attribute, NULL when the
 * order does not give it.  Past ORDER_MAX_LINES the answer is refused
 * (PERMANENT): an order that large is not one invsync can apply.
 */
void
adapter_add_order_line(const ChannelAdapter *adapter, OrderDetail *out,
					   const char *const *ids, int64 qty)
{
	OrderLine  *line;
	int			i;
	int			k;

	for (i = 0; i < out->nlines; i++)
	{
		bool		same = true;

		for (k = 0; k < adapter->nattributes && same; k++)
			same = (ids[k] == NULL) == (out->lines[i].ids[k] == NULL) &&
				(ids[k] == NULL || strcmp(ids[k], out->lines[i].ids[k]) == 0);
		if (same)
		{
			out->lines[i].qty += qty;
			return;
		}
	}
	if (out->nlines >= ORDER_MAX_LINES)
	{
		adapter_set_result(&out->call, SYNC_OUTCOME_PERMANENT, "too_many_lines",
						   "the order has more lines than invsync reads", NULL);
		return;
	}
	if (out->lines == NULL)
		out->lines = palloc0(sizeof(OrderLine) * 8);
	else if (out->nlines >= 8 && (out->nlines & (out->nlines - 1)) == 0)
		out->lines = repalloc(out->lines, sizeof(OrderLine) * out->nlines * 2);
	line = &out->lines[out->nlines++];
	memset(line, 0, sizeof(OrderLine));
	for (k = 0; k < adapter->nattributes; k++)
		line->ids[k] = ids[k] ? pstrdup(ids[k]) : NULL;
	line->qty = qty;
}

/*
 * A fetched order's lines as invsync._apply_order takes them:
 * [{"ids": {attribute: id, ...}, "qty": n}, ...], palloc'd.
 */
char *
adapter_order_lines_json(const ChannelAdapter *adapter, const OrderDetail *detail)
{
	StringInfoData buf;
	int			i;
	int			k;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < detail->nlines; i++)
	{
		bool		first = true;

		appendStringInfoString(&buf, i > 0 ? ",{\"ids\":{" : "{\"ids\":{");
		for (k = 0; k < adapter->nattributes; k++)
		{
			if (detail->lines[i].ids[k] == NULL)
				continue;
			if (!first)
				appendStringInfoChar(&buf, ',');
			first = false;
			json_append_string(&buf, adapter->attributes[k].name);
			appendStringInfoChar(&buf, ':');
			json_append_string(&buf, detail->lines[i].ids[k]);
		}
		appendStringInfo(&buf, "},\"qty\":" INT64_FORMAT "}", detail->lines[i].qty);
	}
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/*
 * Does haystack (may be NULL) contain the ASCII needle, whatever the case?
 * Marketplaces' messages are matched so ("Too many requests", "timestamp").
 */
bool
adapter_contains_ci(const char *haystack, const char *needle)
{
	size_t		n = strlen(needle);

	if (haystack == NULL)
		return false;
	for (; *haystack != '\0'; haystack++)
	{
		if (pg_strncasecmp(haystack, needle, n) == 0)
			return true;
	}
	return false;
}

/* ----------------------------------------------------------------
 * Requests
 * ----------------------------------------------------------------
 */

/*
 * Start a request to base_url (less any trailing slash) followed by path.
 * base_url is the app's override or the adapter's production host.
 */
void
request_init(HttpRequestSpec *request, const char *method,
			 const char *base_url, const char *path)
{
	size_t		len = strlen(base_url);
	StringInfoData base;

	memset(request, 0, sizeof(HttpRequestSpec));
	while (len > 0 && base_url[len - 1] == '/')
		len--;
	initStringInfo(&base);
	appendBinaryStringInfo(&base, base_url, len);
	appendStringInfoString(&base, path);
	request->method = method;
	request->base = base.data;
}

/*
 * Append a query parameter.  value NULL is sent as empty.  Adapters add at
 * most HTTP_MAX_PARAMS; one more is a bug in the adapter, not in anything
 * a server sent, hence the elog.
 */
void
request_add_query(HttpRequestSpec *request, const char *name,
				  const char *value, bool secret)
{
	HttpParam  *param;

	if (request->nquery >= HTTP_MAX_PARAMS)
		elog(ERROR, "request to %s has too many query parameters", request->base);
	param = &request->query[request->nquery++];
	param->name = pstrdup(name);
	param->value = pstrdup(value ? value : "");
	param->secret = secret;
}

/* Append a header (the engine adds Content-Type and X-Correlation-ID). */
void
request_add_header(HttpRequestSpec *request, const char *name,
				   const char *value, bool secret)
{
	HttpParam  *header;

	if (request->nheaders >= HTTP_MAX_HEADERS)
		elog(ERROR, "request to %s has too many headers", request->base);
	header = &request->headers[request->nheaders++];
	header->name = pstrdup(name);
	header->value = pstrdup(value ? value : "");
	header->secret = secret;
}

/* The body, sent byte for byte as given (and as signed). */
void
request_set_body(HttpRequestSpec *request, char *body, size_t body_len,
				 const char *content_type)
{
	request->body = body;
	request->body_len = body_len;
	request->content_type = content_type;
}

/*
 * The request's URL, its query values percent-encoded; redacted, every
 * secret value reads "[redacted]": the form that logs and attempt rows
 * show.
 */
char *
request_url(const HttpRequestSpec *request, bool redacted)
{
	StringInfoData url;
	int			i;

	initStringInfo(&url);
	appendStringInfoString(&url, request->base);
	for (i = 0; i < request->nquery; i++)
	{
		const HttpParam *param = &request->query[i];

		appendStringInfoChar(&url, i == 0 ? '?' : '&');
		url_escape_append(&url, param->name);
		appendStringInfoChar(&url, '=');
		if (redacted && param->secret)
			appendStringInfoString(&url, REDACTED);
		else
			url_escape_append(&url, param->value);
	}
	return url.data;
}

/* ----------------------------------------------------------------
 * Responses
 * ----------------------------------------------------------------
 */

/*
 * The value of a response header (the last one of that name), trimmed,
 * or NULL.  Names are matched without regard to case.
 */
char *
response_header(const HttpResponseView *response, const char *name)
{
	const char *line = response->headers;
	size_t		name_len = strlen(name);
	char	   *found = NULL;

	while (line != NULL && *line != '\0')
	{
		const char *end = strchr(line, '\n');
		const char *value;
		const char *value_end;

		if (end == NULL)
			end = line + strlen(line);
		if ((size_t) (end - line) > name_len && line[name_len] == ':' &&
			pg_strncasecmp(line, name, name_len) == 0)
		{
			value = line + name_len + 1;
			value_end = end;
			while (value < value_end && (*value == ' ' || *value == '\t'))
				value++;
			while (value_end > value &&
				   (value_end[-1] == '\r' || value_end[-1] == ' ' ||
					value_end[-1] == '\t'))
				value_end--;
			if (found != NULL)
				pfree(found);
			found = pnstrdup(value, value_end - value);
		}
		line = *end ? end + 1 : end;
	}
	return found;
}

/*
 * Read a response the way every channel must before looking at what the
 * marketplace says: the retry hint (Retry-After, or the X-Ratelimit-Reset-
 * After that Tokopedia-style gateways send), HTTP 429 as THROTTLED, and a
 * body that is not a JSON object as RETRY (a gateway's HTML error page, a
 * truncated answer).  Returns the parsed object, or NULL when the result is
 * decided without one.  On a 429 with a JSON body the object is returned
 * and the outcome is already THROTTLED: the adapter may add the
 * marketplace's code and message but must keep the outcome.
 */
const JsonValue *
response_json(const ShopContext *shop, const HttpResponseView *response,
			  CallResult *result)
{
	JsonValue  *root;
	char	   *hint;
	char		code[32];
	char		message[64];

	result->outcome = SYNC_OUTCOME_NONE;
	result->retry_after_ms = 0;
	result->request_id[0] = '\0';
	result->error_code[0] = '\0';
	result->error_message[0] = '\0';

	if ((hint = response_header(response, "Retry-After")) != NULL ||
		(hint = response_header(response, "X-Ratelimit-Reset-After")) != NULL)
		result->retry_after_ms = retry_after_ms_from(hint);

	root = json_parse(response->body, response->body_len);
	if (root != NULL && root->kind != JSON_KIND_OBJECT)
		root = NULL;

	snprintf(code, sizeof(code), "http_%ld", response->status);
	if (response->status == 429)
	{
		snprintf(message, sizeof(message), "HTTP 429 Too Many Requests");
		adapter_set_result(result, SYNC_OUTCOME_THROTTLED, code, message, shop);
		return root;
	}
	if (root == NULL)
	{
		if (response->status >= 500)
		{
			snprintf(message, sizeof(message), "HTTP %ld", response->status);
			adapter_set_result(result, SYNC_OUTCOME_RETRY, code, message, shop);
		}
		else
		{
			snprintf(message, sizeof(message),
					 "HTTP %ld with a body that is not a JSON object",
					 response->status);
			adapter_set_result(result, SYNC_OUTCOME_RETRY, "malformed_response",
							   message, shop);
		}
		return NULL;
	}
	return root;
}

/*
 * Read a retry hint in seconds as milliseconds: Retry-After's
 * delay-seconds form, or a decimal like X-Ratelimit-Reset-After's "0.5"
 * (rounded up).  An HTTP date, garbage or nothing gives 0, which leaves the
 * engine to its own backoff.  Delays are capped at a day.
 */
int
retry_after_ms_from(const char *seconds_text)
{
	const char *p = seconds_text;
	int64		ms = 0;
	int64		fraction_scale = 100;
	bool		digits = false;

	if (p == NULL)
		return 0;
	while (*p == ' ' || *p == '\t')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
	{
		digits = true;
		if (ms < (int64) RETRY_AFTER_MAX_SECONDS * 1000)
			ms = ms * 10 + (*p - '0') * 1000;
	}
	if (*p == '.')
	{
		for (p++; *p >= '0' && *p <= '9'; p++)
		{
			digits = true;
			if (fraction_scale > 0)
			{
				ms += (*p - '0') * fraction_scale;
				fraction_scale /= 10;
			}
			else if (fraction_scale == 0 && *p != '0')
			{
				ms++;			/* round up what is left, once */
				fraction_scale = -1;
			}
		}
	}
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (!digits || *p != '\0')
		return 0;
	return (int) Min(ms, (int64) RETRY_AFTER_MAX_SECONDS * 1000);
}
