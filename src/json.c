/*-------------------------------------------------------------------------
 *
 * json.c
 *	  A small read-only JSON DOM for marketplace responses, built on
 *	  PostgreSQL's own JSON parser, and a JSON string-literal writer.
 *
 * pg_parse_json reports errors by return value, but three things under it
 * can still ereport, and the sync worker must never longjmp on something a
 * remote server sent:
 *
 *	- check_stack_depth() on deep nesting: json_parse first measures the
 *	  depth itself and refuses anything deeper than JSON_MAX_DEPTH;
 *	- pg_unicode_to_server() when a \uXXXX escape names a character the
 *	  database encoding cannot hold: outside UTF-8 databases json_parse
 *	  rewrites every non-ASCII escape to \u003f ("?") first, so responses
 *	  keep their structure and only lose those characters;
 *	- palloc running out of memory, which no parser can avoid; documents
 *	  longer than JSON_MAX_LENGTH are refused up front.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "json.h"

/* the DOM under construction, as pg_parse_json's semantic state */
typedef struct JsonBuildState
{
	JsonValue  *root;
	JsonValue  *stack[JSON_MAX_DEPTH + 1];	/* open arrays and objects */
	int			depth;
	char	   *pending_key;	/* name of the object member being parsed */
} JsonBuildState;

static bool json_prescan(char *text, size_t len, bool rewrite_escapes);
static int	hex_value(char c);
static JsonValue *json_new_value(JsonKind kind);
static void json_attach(JsonBuildState *state, JsonValue *value);
static void json_container_start(JsonBuildState *state, JsonKind kind);
static void json_sem_object_start(void *state);
static void json_sem_array_start(void *state);
static void json_sem_end(void *state);
static void json_sem_object_field_start(void *state, char *fname,
										bool isnull);
static void json_sem_scalar(void *state, char *token,
							JsonTokenType tokentype);

/*
 * Return the value of one hex digit, or -1.
 */
static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Walk the raw text once before the real parse, so that nothing the parser
 * calls can raise an ERROR: refuse nesting deeper than JSON_MAX_DEPTH (the
 * parser's check_stack_depth() would ereport long before the C stack is in
 * danger, but on its own terms), and, when rewrite_escapes is set, turn
 * every \uXXXX escape above U+007F into \u003f in place, because the
 * backend converts escapes to the database encoding and ereports when that
 * is impossible.  The rewrite keeps the length, so offsets do not move.
 * Returns false when the text is malformed in a way this scan can see.
 */
static bool
json_prescan(char *text, size_t len, bool rewrite_escapes)
{
	size_t		i;
	int			depth = 0;
	bool		in_string = false;

	for (i = 0; i < len; i++)
	{
		char		c = text[i];

		if (in_string)
		{
			if (c == '"')
				in_string = false;
			else if (c == '\\')
			{
				if (i + 1 >= len)
					return false;
				if (text[i + 1] == 'u')
				{
					int			code = 0;
					int			k;

					if (i + 5 >= len)
						return false;
					for (k = 2; k <= 5; k++)
					{
						int			h = hex_value(text[i + k]);

						if (h < 0)
							return false;
						code = code * 16 + h;
					}
					if (rewrite_escapes && code > 0x7F)
						memcpy(text + i + 2, "003f", 4);
					i += 5;
				}
				else
					i++;
			}
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > JSON_MAX_DEPTH)
				return false;
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return true;
}

/*
 * Allocate a value of the given kind, all other fields empty.
 */
static JsonValue *
json_new_value(JsonKind kind)
{
	JsonValue  *value = palloc0(sizeof(JsonValue));

	value->kind = kind;
	return value;
}

/*
 * Hang a freshly parsed value under the innermost open container, or make
 * it the root.  Members are kept in arrays grown by doubling, so objects
 * keep their order and duplicate keys (json_get takes the last one).
 */
static void
json_attach(JsonBuildState *state, JsonValue *value)
{
	JsonValue  *parent;

	if (state->depth == 0)
	{
		state->root = value;
		return;
	}

	parent = state->stack[state->depth - 1];
	if (parent->count == 0)
	{
		parent->items = palloc(4 * sizeof(JsonValue *));
		if (parent->kind == JSON_KIND_OBJECT)
			parent->keys = palloc(4 * sizeof(char *));
	}
	else if ((parent->count & (parent->count - 1)) == 0 && parent->count >= 4)
	{
		/* count is a power of two, at least 4: the arrays are full */
		parent->items = repalloc(parent->items,
								 2 * parent->count * sizeof(JsonValue *));
		if (parent->kind == JSON_KIND_OBJECT)
			parent->keys = repalloc(parent->keys,
									2 * parent->count * sizeof(char *));
	}

	parent->items[parent->count] = value;
	if (parent->kind == JSON_KIND_OBJECT)
	{
		parent->keys[parent->count] =
			state->pending_key ? state->pending_key : "";
		state->pending_key = NULL;
	}
	parent->count++;
}

/*
 * Open an array or object: attach it and make it the innermost container.
 * The prescan bounds the depth, so the stack cannot overflow; the check is
 * only a seatbelt, and it degrades to a flatter DOM rather than an ERROR.
 */
static void
json_container_start(JsonBuildState *state, JsonKind kind)
{
	JsonValue  *value = json_new_value(kind);

	json_attach(state, value);
	if (state->depth < JSON_MAX_DEPTH + 1)
		state->stack[state->depth++] = value;
}

/* pg_parse_json callback: '{' */
static void
json_sem_object_start(void *state)
{
	json_container_start((JsonBuildState *) state, JSON_KIND_OBJECT);
}

/* pg_parse_json callback: '[' */
static void
json_sem_array_start(void *state)
{
	json_container_start((JsonBuildState *) state, JSON_KIND_ARRAY);
}

/* pg_parse_json callback: '}' or ']' */
static void
json_sem_end(void *state)
{
	JsonBuildState *build = (JsonBuildState *) state;

	if (build->depth > 0)
		build->depth--;
}

/* pg_parse_json callback: an object member's name */
static void
json_sem_object_field_start(void *state, char *fname, bool isnull)
{
	((JsonBuildState *) state)->pending_key = fname;
}

/* pg_parse_json callback: a string, number, true, false or null */
static void
json_sem_scalar(void *state, char *token, JsonTokenType tokentype)
{
	JsonValue  *value;

	switch (tokentype)
	{
		case JSON_TOKEN_STRING:
			value = json_new_value(JSON_KIND_STRING);
			value->text = token ? token : "";
			break;
		case JSON_TOKEN_NUMBER:
			value = json_new_value(JSON_KIND_NUMBER);
			value->text = token ? token : "0";
			break;
		case JSON_TOKEN_TRUE:
			value = json_new_value(JSON_KIND_BOOL);
			value->boolean = true;
			break;
		case JSON_TOKEN_FALSE:
			value = json_new_value(JSON_KIND_BOOL);
			value->boolean = false;
			break;
		default:
			value = json_new_value(JSON_KIND_NULL);
			break;
	}
	json_attach((JsonBuildState *) state, value);
}

/*
 * Parse len bytes of JSON text (which need not be NUL-terminated) into a
 * DOM.  Returns NULL, never an ERROR, for malformed or over-deep input,
 * for an empty text and for texts longer than JSON_MAX_LENGTH.  Surrounding
 * whitespace is allowed, as in any JSON document.
 */
JsonValue *
json_parse(const char *text, size_t len)
{
	char	   *copy;
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonBuildState state;
	JsonParseErrorType rc;

	if (text == NULL || len == 0 || len > JSON_MAX_LENGTH)
		return NULL;

	/* the lexer wants a writable buffer, and the prescan may rewrite it */
	copy = palloc(len + 1);
	memcpy(copy, text, len);
	copy[len] = '\0';

	if (!json_prescan(copy, len, GetDatabaseEncoding() != PG_UTF8))
	{
		pfree(copy);
		return NULL;
	}

	memset(&state, 0, sizeof(state));
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &state;
	sem.object_start = json_sem_object_start;
	sem.object_end = json_sem_end;
	sem.array_start = json_sem_array_start;
	sem.array_end = json_sem_end;
	sem.object_field_start = json_sem_object_field_start;
	sem.scalar = json_sem_scalar;

	lex = makeJsonLexContextCstringLen(copy, (int) len, PG_UTF8, true);
	rc = pg_parse_json(lex, &sem);

	/* the DOM owns palloc'd copies of every token, not pointers into copy */
	if (lex->strval != NULL)
	{
		pfree(lex->strval->data);
		pfree(lex->strval);
	}
	pfree(lex);
	pfree(copy);

	if (rc != JSON_SUCCESS)
		return NULL;
	return state.root;
}

/*
 * The value of member key of an object, or NULL when object is not an
 * object or has no such member.  With duplicate keys the last one wins, as
 * in jsonb.
 */
const JsonValue *
json_get(const JsonValue *object, const char *key)
{
	int			i;

	if (object == NULL || object->kind != JSON_KIND_OBJECT)
		return NULL;
	for (i = object->count - 1; i >= 0; i--)
	{
		if (strcmp(object->keys[i], key) == 0)
			return object->items[i];
	}
	return NULL;
}

/*
 * Member key of object if it is itself an object, else NULL.
 */
const JsonValue *
json_get_object(const JsonValue *object, const char *key)
{
	const JsonValue *value = json_get(object, key);

	return (value != NULL && value->kind == JSON_KIND_OBJECT) ? value : NULL;
}

/*
 * Member key of object if it is an array, else NULL.
 */
const JsonValue *
json_get_array(const JsonValue *object, const char *key)
{
	const JsonValue *value = json_get(object, key);

	return (value != NULL && value->kind == JSON_KIND_ARRAY) ? value : NULL;
}

/*
 * Member key of object if it is a string, else NULL.  Numbers are not
 * turned into strings here; see json_scalar_text for ids that come either
 * way.
 */
const char *
json_get_string(const JsonValue *object, const char *key)
{
	const JsonValue *value = json_get(object, key);

	if (value == NULL || value->kind != JSON_KIND_STRING)
		return NULL;
	return value->text;
}

/*
 * Read member key of object as an int64: a JSON integer or a string of
 * decimal digits (marketplaces send ids both ways).  False, with *out
 * untouched, when the member is missing, of another kind, fractional or
 * out of range.
 */
bool
json_get_int64(const JsonValue *object, const char *key, int64 *out)
{
	return json_value_int64(json_get(object, key), out);
}

/*
 * The text of a string or number value (a number's raw lexeme), else NULL:
 * for ids a marketplace may send as either.
 */
const char *
json_scalar_text(const JsonValue *value)
{
	if (value == NULL)
		return NULL;
	if (value->kind == JSON_KIND_STRING || value->kind == JSON_KIND_NUMBER)
		return value->text;
	return NULL;
}

/*
 * json_get_int64 on a value already in hand, e.g. an array element.
 */
bool
json_value_int64(const JsonValue *value, int64 *out)
{
	const char *text = json_scalar_text(value);

	return text != NULL && json_parse_int64_text(text, out);
}

/*
 * Parse an optional '-' and 1 to 19 decimal digits, exactly, into an int64
 * with overflow checks.  Unlike pg_strtoint64 it never ereports, and unlike
 * strtoll it accepts no spaces, '+' or trailing garbage.
 */
bool
json_parse_int64_text(const char *text, int64 *out)
{
	const char *p = text;
	bool		negative = false;
	uint64		acc = 0;
	uint64		limit;

	if (*p == '-')
	{
		negative = true;
		p++;
	}
	if (*p == '\0')
		return false;

	limit = negative ? (uint64) PG_INT64_MAX + 1 : (uint64) PG_INT64_MAX;
	for (; *p != '\0'; p++)
	{
		if (*p < '0' || *p > '9')
			return false;
		if (acc > (limit - (uint64) (*p - '0')) / 10)
			return false;
		acc = acc * 10 + (uint64) (*p - '0');
	}

	if (negative)
		*out = (acc == (uint64) PG_INT64_MAX + 1) ? PG_INT64_MIN : -(int64) acc;
	else
		*out = (int64) acc;
	return true;
}

/*
 * Append str to buf as a JSON string literal, quotes included, escaped the
 * way the json type's output is (escape_json).
 */
void
json_append_string(StringInfo buf, const char *str)
{
	escape_json(buf, str);
}
