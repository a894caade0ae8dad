/*-------------------------------------------------------------------------
 *
 * json.h
 *	  A small read-only JSON DOM for marketplace responses, and a helper to
 *	  write JSON string literals.
 *
 * The DOM is built on PostgreSQL's own JSON parser (common/jsonapi.h), but
 * unlike the json and jsonb types it never raises an ERROR: malformed input
 * gives NULL, so the sync worker can read whatever a remote server sends
 * outside any transaction.  Everything is palloc'd in the current memory
 * context and is never freed piecemeal.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/json.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVSYNC_JSON_H
#define INVSYNC_JSON_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* deepest nesting json_parse accepts; deeper documents are malformed */
#define JSON_MAX_DEPTH			64

/* longest document json_parse accepts, in bytes */
#define JSON_MAX_LENGTH			(64 * 1024 * 1024)

typedef enum JsonKind
{
	JSON_KIND_NULL,
	JSON_KIND_BOOL,
	JSON_KIND_NUMBER,
	JSON_KIND_STRING,
	JSON_KIND_ARRAY,
	JSON_KIND_OBJECT
} JsonKind;

typedef struct JsonValue
{
	JsonKind	kind;
	char	   *text;			/* STRING: de-escaped value; NUMBER: the raw
								 * lexeme; else NULL */
	bool		boolean;		/* BOOL only */
	int			count;			/* ARRAY, OBJECT: number of members */
	struct JsonValue **items;	/* ARRAY, OBJECT: the members, in order */
	char	  **keys;			/* OBJECT: the member names, in order */
} JsonValue;

extern JsonValue *json_parse(const char *text, size_t len);

extern const JsonValue *json_get(const JsonValue *object, const char *key);
extern const JsonValue *json_get_object(const JsonValue *object,
										const char *key);
extern const JsonValue *json_get_array(const JsonValue *object,
									   const char *key);
extern const char *json_get_string(const JsonValue *object, const char *key);
extern bool json_get_int64(const JsonValue *object, const char *key,
						   int64 *out);

extern const char *json_scalar_text(const JsonValue *value);
extern bool json_value_int64(const JsonValue *value, int64 *out);
extern bool json_parse_int64_text(const char *text, int64 *out);

extern void json_append_string(StringInfo buf, const char *str);

#endif							/* INVSYNC_JSON_H */
