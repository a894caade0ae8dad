/*-------------------------------------------------------------------------
 *
 * inputs.c
 *	  Bounded inputs: the longest codes and texts invsync's functions take,
 *	  and errors that never repeat an oversized value.
 *
 * Every argument a caller can make arbitrarily large is bounded (DESIGN
 * §7): a 10 MB sku would otherwise come back in a 10 MB error message and
 * log line, and a 10 MB reason would stay in the append-only ledger for
 * good.  The limits, in characters, are in invsync.h and README.md; a
 * value over its limit is refused with IV027 before anything is written,
 * and the error shows at most its first INVSYNC_CLIP_BYTES bytes.  Only
 * as much of a value as the check needs is read: its size from its
 * header, and its characters only when its size leaves the answer open.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/inputs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "invsync.h"

PG_FUNCTION_INFO_V1(invsync_check_length_sql);
PG_FUNCTION_INFO_V1(invsync_raw_size_sql);
PG_FUNCTION_INFO_V1(invsync_clip_sql);

/* what _check_length() knows by name */
typedef struct InputLimit
{
	const char *what;
	int			max_chars;
} InputLimit;

static const InputLimit input_limits[] = {
	{"sku", INVSYNC_MAX_SKU_LENGTH},
	{"location code", INVSYNC_MAX_LOCATION_LENGTH},
	{"reason", INVSYNC_MAX_REASON_LENGTH},
	{"reference", INVSYNC_MAX_REFERENCE_LENGTH},
	{"name", INVSYNC_MAX_NAME_LENGTH},
};

/*
 * The first INVSYNC_CLIP_BYTES bytes (at most; whole characters) of a
 * string of len bytes, followed by "..." when that is not all of it.
 */
char *
invsync_clip(const char *value, int len)
{
	int			keep = pg_mbcliplen(value, len, INVSYNC_CLIP_BYTES);

	return psprintf("%.*s%s", keep, value, keep < len ? "..." : "");
}

/*
 * invsync_clip() of a text datum, reading only the slice it shows (a
 * character that starts within the clip ends within the slice).
 */
static char *
clip_datum(Datum value)
{
	Size		bytes = toast_raw_datum_size(value) - VARHDRSZ;
	text	   *head = DatumGetTextPSlice(value, 0,
										  INVSYNC_CLIP_BYTES + MAX_MULTIBYTE_CHAR_LEN);
	int			keep = pg_mbcliplen(VARDATA_ANY(head), VARSIZE_ANY_EXHDR(head),
									INVSYNC_CLIP_BYTES);

	return psprintf("%.*s%s", keep, VARDATA_ANY(head),
					(Size) keep < bytes ? "..." : "");
}

/*
 * IV027 unless a text datum has at most max_chars characters; what names
 * it in the error ("sku", "reason", ...).
 */
void
invsync_check_length(Datum value, const char *what, int max_chars)
{
	Size		bytes = toast_raw_datum_size(value) - VARHDRSZ;

	/* a character takes one byte at least, and at most the encoding's most */
	if (bytes <= (Size) max_chars)
		return;
	if (bytes <= (Size) max_chars * pg_database_encoding_max_length())
	{
		text	   *t = DatumGetTextPP(value);

		if (pg_mbstrlen_with_len(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)) <= max_chars)
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVSYNC_TOO_LONG),
			 errmsg("%s is too long", what),
			 errdetail("At most %d characters are allowed; this one has %zu bytes, beginning \"%s\".",
					   max_chars, bytes, clip_datum(value))));
}

/*
 * SQL: invsync._check_length(p_value text, p_what text) returns void,
 * STRICT.  IV027 unless p_value fits the limit of p_what: 'sku',
 * 'location code', 'reason', 'reference' or 'name'.
 */
Datum
invsync_check_length_sql(PG_FUNCTION_ARGS)
{
	char	   *what = text_to_cstring(PG_GETARG_TEXT_PP(1));

	for (int i = 0; i < lengthof(input_limits); i++)
		if (strcmp(what, input_limits[i].what) == 0)
		{
			invsync_check_length(PG_GETARG_DATUM(0), what,
								 input_limits[i].max_chars);
			PG_RETURN_VOID();
		}
	elog(ERROR, "no length limit is defined for \"%s\"", what);
	PG_RETURN_VOID();			/* keep compiler quiet */
}

/*
 * SQL: invsync._raw_size(p_value jsonb) returns bigint, STRICT.  The size
 * of a value in bytes, uncompressed, read from its header: what a check of
 * its size costs should not depend on its size.
 */
Datum
invsync_raw_size_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) toast_raw_datum_size(PG_GETARG_DATUM(0)));
}

/*
 * SQL: invsync._clip(p_value text) returns text, STRICT.  At most the
 * first INVSYNC_CLIP_BYTES bytes of p_value, with "..." when there is
 * more: what an error message may show of a value a caller passed.
 */
Datum
invsync_clip_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(clip_datum(PG_GETARG_DATUM(0))));
}
