/*-------------------------------------------------------------------------
 *
 * endpoint.c
 *	  The rule for marketplace base URLs (invsync.apps.base_url): https
 *	  only, unless a superuser set invsync.allow_insecure_http; a plain
 *	  host name or IP address with an optional port and path prefix; no
 *	  user name or password, query, fragment, spaces or other characters a
 *	  request URL built on it could be confused by; at most
 *	  ENDPOINT_BASE_URL_MAX bytes.
 *
 * The rule is applied twice.  A trigger on invsync.apps refuses a base URL
 * breaking it when it is stored (IV023 malformed, IV024 plain http), and
 * invsync._claim() asks invsync._base_url_refusal() at send time, under
 * the setting as it is then, so that a URL stored while plain http was
 * allowed, written past the trigger, or loaded from a dump (which the
 * trigger lets pass), is never used: the rows of its shops become dead
 * letters carrying the reason instead of requests.
 * src/http.c enforces the same scheme rule on libcurl itself.
 *
 * Reasons never quote the URL: a malformed one may carry a password.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/endpoint.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "adapter.h"
#include "endpoint.h"
#include "invsync.h"

#define ERRCODE_INVSYNC_BAD_BASE_URL		MAKE_SQLSTATE('I', 'V', '0', '2', '3')
#define ERRCODE_INVSYNC_INSECURE_BASE_URL	MAKE_SQLSTATE('I', 'V', '0', '2', '4')

PG_FUNCTION_INFO_V1(invsync_base_url_refusal);
PG_FUNCTION_INFO_V1(invsync_apps_check_base_url);

static bool host_char(char c);
static bool path_char(char c);

/* letters, digits, '-' and '.': a DNS name or an IPv4 address */
static bool
host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* RFC 3986 unreserved, sub-delims, ':', '%' and '/', without '@' */
static bool
path_char(char c)
{
	return host_char(c) || c == '_' || c == '~' || c == '/' || c == '%' ||
		c == ':' || c == '!' || c == '$' || c == '&' || c == '\'' ||
		c == '(' || c == ')' || c == '*' || c == '+' || c == ',' ||
		c == ';' || c == '=';
}

/*
 * Judge a base URL: scheme://host[:port][/path-prefix].  *reason is set to
 * a sentence saying what is wrong (a static string) unless the verdict is
 * ENDPOINT_OK.  Plain http is ENDPOINT_INSECURE unless allow_http; every
 * other problem is ENDPOINT_MALFORMED and takes precedence.
 */
EndpointVerdict
endpoint_check_base_url(const char *url, bool allow_http, const char **reason)
{
	const char *p;
	const char *authority_end;
	bool		http = false;

	*reason = NULL;
	if (strlen(url) > ENDPOINT_BASE_URL_MAX)
	{
		*reason = "A base URL must have at most 512 bytes.";
		return ENDPOINT_MALFORMED;
	}
	if (strncmp(url, "https://", 8) == 0)
		p = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
	{
		p = url + 7;
		http = true;
	}
	else
	{
		*reason = "A base URL must begin with \"https://\".";
		return ENDPOINT_MALFORMED;
	}

	/* the authority: host, or [IPv6], then an optional port */
	authority_end = p + strcspn(p, "/?#");
	if (memchr(p, '@', authority_end - p) != NULL)
	{
		*reason = "A base URL must not carry a user name or password.";
		return ENDPOINT_MALFORMED;
	}
	if (*p == '[')
	{
		p++;
		while (p < authority_end && (isxdigit((unsigned char) *p) ||
									 *p == ':' || *p == '.'))
			p++;
		if (p >= authority_end || *p != ']' || p[-1] == '[')
		{
			*reason = "The host of a base URL must be a DNS name or an IP address.";
			return ENDPOINT_MALFORMED;
		}
		p++;
	}
	else
	{
		const char *host = p;

		while (p < authority_end && host_char(*p))
			p++;
		if (p == host || *host == '-' || *host == '.')
		{
			*reason = "The host of a base URL must be a DNS name or an IP address.";
			return ENDPOINT_MALFORMED;
		}
	}
	if (p < authority_end && *p == ':')
	{
		const char *digits = ++p;
		long		port = 0;

		while (p < authority_end && *p >= '0' && *p <= '9')
		{
			if (port <= 65535)
				port = port * 10 + (*p - '0');
			p++;
		}
		if (p == digits || p != authority_end || port < 1 || port > 65535)
		{
			*reason = "The port of a base URL must be a number from 1 to 65535.";
			return ENDPOINT_MALFORMED;
		}
	}
	if (p != authority_end)
	{
		*reason = "The host of a base URL must be a DNS name or an IP address.";
		return ENDPOINT_MALFORMED;
	}

	/* an optional path prefix */
	for (; *p != '\0'; p++)
	{
		if (*p == '?' || *p == '#')
		{
			*reason = "A base URL must not carry a query or a fragment.";
			return ENDPOINT_MALFORMED;
		}
		if (!path_char(*p))
		{
			*reason = "A base URL must hold only letters, digits and URL punctuation: no spaces, quotes, control or non-ASCII characters.";
			return ENDPOINT_MALFORMED;
		}
	}

	if (http && !allow_http)
	{
		*reason = "Plain http is refused (invsync.allow_insecure_http is off): it would send tokens and signatures in clear text.";
		return ENDPOINT_INSECURE;
	}
	return ENDPOINT_OK;
}

/*
 * SQL: invsync._base_url_refusal(p_url text) returns text.  Why the worker
 * may not send to p_url under the current settings, or NULL when it may.
 * STRICT: a NULL base URL means the marketplace's production host, which
 * the adapter knows and which is always https.
 */
Datum
invsync_base_url_refusal(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *reason;

	if (endpoint_check_base_url(url, invsync_allow_insecure_http,
								&reason) == ENDPOINT_OK)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(reason));
}

/*
 * Refuse one base URL column's value (IV023 / IV024) unless it is NULL.
 */
static void
check_base_url_column(HeapTuple tuple, TupleDesc tupdesc, const char *column,
					  const char *label)
{
	int			attnum = SPI_fnumber(tupdesc, column);
	bool		isnull;
	Datum		value;
	const char *reason;

	if (attnum <= 0)
		return;					/* an older version's table */
	value = heap_getattr(tuple, attnum, tupdesc, &isnull);
	if (isnull)
		return;
	switch (endpoint_check_base_url(TextDatumGetCString(value),
									invsync_allow_insecure_http, &reason))
	{
		case ENDPOINT_OK:
			break;
		case ENDPOINT_INSECURE:
			ereport(ERROR,
					(errcode(ERRCODE_INVSYNC_INSECURE_BASE_URL),
					 errmsg("%s must use https", label),
					 errdetail("%s", reason),
					 errhint("A superuser may allow plain http for tests with invsync.allow_insecure_http in postgresql.conf.")));
			break;
		case ENDPOINT_MALFORMED:
			ereport(ERROR,
					(errcode(ERRCODE_INVSYNC_BAD_BASE_URL),
					 errmsg("invalid %s", label),
					 errdetail("%s", reason),
					 errhint("Give https://host[:port][/prefix], or NULL for the marketplace's production host.")));
			break;
	}
}

/*
 * SQL: invsync._apps_check_base_url() returns trigger.  BEFORE INSERT OR
 * UPDATE OF channel, base_url, auth_base_url, batch_size on invsync.apps:
 * refuse a base URL the worker could not use, IV024 for plain http while
 * invsync.allow_insecure_http is off, IV023 for anything else wrong with
 * it, and a batch size above what the channel's marketplace accepts
 * (IV029).  NULLs pass, and so does a row loaded from a dump: one inserted
 * with a created_at other than now().  A new app comes without one, and
 * takes this transaction's start here, on the node that stores it (see
 * "Rows loaded from a dump" in invsync_sync.sql).  It was stored under
 * the rule of its source (or before there was one), and refusing it would
 * lose the app, its shops and their listings from the restore; _claim()
 * checks its URLs again before anything is sent to them, and the worker
 * never sends more than the channel's largest batch.  A column the table
 * lacks (an older version's, before ALTER EXTENSION UPDATE) is not checked.
 */
Datum
invsync_apps_check_base_url(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	bool		isnull;
	Datum		value;
	int			attnum;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		elog(ERROR, "invsync._apps_check_base_url() must be a BEFORE INSERT OR UPDATE row trigger");

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	tupdesc = trigdata->tg_relation->rd_att;

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		int			created_attnum = SPI_fnumber(tupdesc, "created_at");

		if (created_attnum <= 0)
			elog(ERROR, "invsync._apps_check_base_url(): table has no column created_at");
		value = heap_getattr(tuple, created_attnum, tupdesc, &isnull);
		if (isnull)
		{
			Datum		created_at = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
			bool		created_at_null = false;

			tuple = heap_modify_tuple_by_cols(tuple, tupdesc, 1, &created_attnum,
											  &created_at, &created_at_null);
		}
		else if (DatumGetTimestampTz(value) != GetCurrentTransactionStartTimestamp())
			return PointerGetDatum(tuple);
	}

	check_base_url_column(tuple, tupdesc, "base_url", "base URL");
	check_base_url_column(tuple, tupdesc, "auth_base_url", "auth base URL");

	attnum = SPI_fnumber(tupdesc, "batch_size");
	value = attnum > 0 ? heap_getattr(tuple, attnum, tupdesc, &isnull) : (Datum) 0;
	if (attnum > 0 && !isnull)
	{
		int			batch_size = DatumGetInt32(value);
		const ChannelAdapter *adapter;
		Datum		channel;

		channel = heap_getattr(tuple, SPI_fnumber(tupdesc, "channel"), tupdesc, &isnull);
		adapter = isnull ? NULL : adapter_for_channel(TextDatumGetCString(channel));
		if (adapter != NULL && (batch_size < 1 || batch_size > adapter->max_batch))
			ereport(ERROR,
					(errcode(ERRCODE_INVSYNC_BAD_BATCH_SIZE),
					 errmsg("batch_size %d is out of range for %s", batch_size,
							adapter->channel),
					 errdetail("%s takes 1 to %d listings per stock update.",
							   adapter->channel, adapter->max_batch)));
	}
	return PointerGetDatum(tuple);
}
