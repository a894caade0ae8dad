/*-------------------------------------------------------------------------
 *
 * adapter.c
 *	  The adapter registry and the rules every channel shares: outcome
 *	  names, settling the listings an adapter left undecided, copying
 *	  server-supplied messages safely, and reading Retry-After.
 *
 * The sync engine and the SQL test hooks (src/adapter_sql.c) both go
 * through these functions, so pg_regress exercises the same rules the
 * worker applies.  Nothing here raises an ERROR.
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

/* longest Retry-After honoured, in seconds */
#define RETRY_AFTER_MAX_SECONDS		86400

/* secrets shorter than this are not searched for in messages */
#define REDACT_MIN_SECRET_LEN		8

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
 * has none yet.  Names are matched exactly, as stored in invsync's tables.
 */
const ChannelAdapter *
adapter_for_channel(const char *channel)
{
	if (channel == NULL)
		return NULL;
	if (strcmp(channel, shopee_adapter.channel) == 0)
		return &shopee_adapter;
	return NULL;
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

/*
 * Ask the adapter whether a listing can ever be sent; see check_listing in
 * adapter.h.  Adapters without the hook accept everything.
 */
bool
adapter_check_listing(const ChannelAdapter *adapter, ListingPush *item)
{
	if (adapter->check_listing == NULL)
		return true;
	return adapter->check_listing(item);
}

/*
 * Give every listing an adapter left at SYNC_OUTCOME_NONE the call's
 * outcome and, unless it has a reason of its own, the call's error code and
 * message.  An adapter that decided nothing at all is a bug, but a
 * transient one from the listings' point of view: they are retried.
 */
void
adapter_settle_outcomes(ListingPush *items, int nitems,
						const StockCallResult *result)
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
 * Read a Retry-After header as milliseconds.  Only the delay-seconds form
 * is understood (marketplaces send that); an HTTP date, garbage or no
 * header gives 0, which leaves the engine to its own backoff.  Delays are
 * capped at a day.
 */
int
adapter_retry_after_ms(const char *header)
{
	const char *p = header;
	int64		seconds = 0;
	bool		digits = false;

	if (p == NULL)
		return 0;
	while (*p == ' ' || *p == '\t')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
	{
		digits = true;
		if (seconds < RETRY_AFTER_MAX_SECONDS)
			seconds = seconds * 10 + (*p - '0');
	}
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (!digits || *p != '\0')
		return 0;
	if (seconds > RETRY_AFTER_MAX_SECONDS)
		seconds = RETRY_AFTER_MAX_SECONDS;
	return (int) (seconds * 1000);
}
