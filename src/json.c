/*-------------------------------------------------------------------------
 *
 * json.c
 *	  A small read-only JSON DOM for marketplace responses, and a JSON
 *	  string-literal writer.
 *
 * The parser is a recursive descent over RFC 8259, written for the worker:
 * it never raises an ERROR on anything a remote server sent (the worker
 * must not longjmp out of reading a response), and it does without
 * pg_parse_json's semantic callbacks and token copies (reading a Shopee
 * answer takes a third fewer instructions).  It accepts what PostgreSQL's
 * JSON parser accepts, de-escapes strings as it does (a \u0000 escape and
 * unpaired surrogates are malformed), and outside UTF-8 databases turns
 * every escape of a character above U+007F into "?", since such a
 * character may not exist in the database encoding.  Nesting deeper than
 * JSON_MAX_DEPTH and documents longer than JSON_MAX_LENGTH are malformed;
 * only palloc running out of memory can still raise an ERROR.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "json.h"

/* the text being parsed, and what the parse needs to know of the database */
typedef struct JsonParser
{
	const char *p;				/* next byte to read */
	const char *end;
	int			depth;			/* arrays and objects open */
	bool		utf8;			/* the database encoding is UTF-8 */
	StringInfoData buf;			/* a string being de-escaped */
} JsonParser;

static JsonValue *parse_value(JsonParser *parser);

/* the value of one hex digit, or -1 */
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

static void
skip_whitespace(JsonParser *parser)
{
	while (parser->p < parser->end &&
		   (*parser->p == ' ' || *parser->p == '\t' ||
			*parser->p == '\n' || *parser->p == '\r'))
		parser->p++;
}

/* a value of the given kind, every other field empty */
static JsonValue *
new_value(JsonKind kind)
{
	JsonValue  *value = palloc0(sizeof(JsonValue));

	value->kind = kind;
	return value;
}

/*
 * Append a member to an array or object.  Members are kept in arrays
 * grown by doubling, so objects keep their order and duplicate keys
 * (json_get takes the last one).
 */
static void
add_member(JsonValue *container, char *key, JsonValue *value)
{
	if (container->count == 0)
	{
		container->items = palloc(4 * sizeof(JsonValue *));
		if (container->kind == JSON_KIND_OBJECT)
			container->keys = palloc(4 * sizeof(char *));
	}
	else if ((container->count & (container->count - 1)) == 0 &&
			 container->count >= 4)
	{
		/* count is a power of two, at least 4: the arrays are full */
		container->items = repalloc(container->items,
									2 * container->count * sizeof(JsonValue *));
		if (container->kind == JSON_KIND_OBJECT)
			container->keys = repalloc(container->keys,
									   2 * container->count * sizeof(char *));
	}
	container->items[container->count] = value;
	if (container->kind == JSON_KIND_OBJECT)
		container->keys[container->count] = key;
	container->count++;
}

/* the four hex digits of a \u escape at parser->p; -1 when malformed */
static int
read_hex4(JsonParser *parser)
{
	int			code = 0;

	if (parser->end - parser->p < 4)
		return -1;
	for (int k = 0; k < 4; k++)
	{
		int			h = hex_value(parser->p[k]);

		if (h < 0)
			return -1;
		code = code * 16 + h;
	}
	parser->p += 4;
	return code;
}

/*
 * A \u escape (parser->p just past the "u"), appended to parser->buf:
 * false when malformed.  A surrogate pair makes one character.
 */
static bool
append_unicode_escape(JsonParser *parser)
{
	int			code = read_hex4(parser);
	unsigned char utf8[8];

	if (code < 0 || code == 0)
		return false;
	if (!parser->utf8)
	{
		appendStringInfoChar(&parser->buf, code > 0x7F ? '?' : (char) code);
		return true;
	}
	if (code >= 0xD800 && code <= 0xDBFF)
	{
		int			low;

		if (parser->end - parser->p < 2 || parser->p[0] != '\\' ||
			parser->p[1] != 'u')
			return false;
		parser->p += 2;
		low = read_hex4(parser);
		if (low < 0xDC00 || low > 0xDFFF)
			return false;
		code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
	}
	else if (code >= 0xDC00 && code <= 0xDFFF)
		return false;
	unicode_to_utf8((pg_wchar) code, utf8);
	appendBinaryStringInfo(&parser->buf, (char *) utf8, pg_utf_mblen(utf8));
	return true;
}

/*
 * A string (parser->p at its opening quote), de-escaped into a palloc'd
 * copy; NULL when malformed.
 */
static char *
parse_string(JsonParser *parser)
{
	const char *run;

	parser->p++;
	resetStringInfo(&parser->buf);
	run = parser->p;
	for (;;)
	{
		unsigned char c;

		if (parser->p >= parser->end)
			return NULL;
		c = (unsigned char) *parser->p;
		if (c == '"' || c == '\\')
		{
			appendBinaryStringInfo(&parser->buf, run, parser->p - run);
			parser->p++;
			if (c == '"')
				return pnstrdup(parser->buf.data, parser->buf.len);
			if (parser->p >= parser->end)
				return NULL;
			c = (unsigned char) *parser->p++;
			switch (c)
			{
				case '"':
				case '\\':
				case '/':
					appendStringInfoChar(&parser->buf, (char) c);
					break;
				case 'b':
					appendStringInfoChar(&parser->buf, '\b');
					break;
				case 'f':
					appendStringInfoChar(&parser->buf, '\f');
					break;
				case 'n':
					appendStringInfoChar(&parser->buf, '\n');
					break;
				case 'r':
					appendStringInfoChar(&parser->buf, '\r');
					break;
				case 't':
					appendStringInfoChar(&parser->buf, '\t');
					break;
				case 'u':
					if (!append_unicode_escape(parser))
						return NULL;
					break;
				default:
					return NULL;
			}
			run = parser->p;
		}
		else if (c < 0x20)
			return NULL;		/* control characters must be escaped */
		else
			parser->p++;
	}
}

/* a run of at least one decimal digit; false when there is none */
static bool
skip_digits(JsonParser *parser)
{
	const char *start = parser->p;

	while (parser->p < parser->end && *parser->p >= '0' && *parser->p <= '9')
		parser->p++;
	return parser->p > start;
}

/* a number: its lexeme, kept as text; NULL when malformed */
static JsonValue *
parse_number(JsonParser *parser)
{
	const char *start = parser->p;
	JsonValue  *value;

	if (*parser->p == '-')
		parser->p++;
	if (parser->p < parser->end && *parser->p == '0')
		parser->p++;
	else if (!skip_digits(parser))
		return NULL;
	if (parser->p < parser->end && *parser->p == '.')
	{
		parser->p++;
		if (!skip_digits(parser))
			return NULL;
	}
	if (parser->p < parser->end && (*parser->p == 'e' || *parser->p == 'E'))
	{
		parser->p++;
		if (parser->p < parser->end && (*parser->p == '+' || *parser->p == '-'))
			parser->p++;
		if (!skip_digits(parser))
			return NULL;
	}
	/* a number runs up to a delimiter: "01" or "1x" is malformed */
	if (parser->p < parser->end &&
		((*parser->p >= '0' && *parser->p <= '9') ||
		 (*parser->p >= 'a' && *parser->p <= 'z') ||
		 (*parser->p >= 'A' && *parser->p <= 'Z') ||
		 *parser->p == '_' || *parser->p == '.'))
		return NULL;
	value = new_value(JSON_KIND_NUMBER);
	value->text = pnstrdup(start, parser->p - start);
	return value;
}

/* true, false or null; NULL when the word is another */
static JsonValue *
parse_literal(JsonParser *parser)
{
	static const struct
	{
		const char *word;
		JsonKind	kind;
		bool		boolean;
	}			literals[] = {
		{"true", JSON_KIND_BOOL, true},
		{"false", JSON_KIND_BOOL, false},
		{"null", JSON_KIND_NULL, false}
	};

	for (int i = 0; i < lengthof(literals); i++)
	{
		size_t		len = strlen(literals[i].word);

		if ((size_t) (parser->end - parser->p) >= len &&
			memcmp(parser->p, literals[i].word, len) == 0)
		{
			JsonValue  *value;

			parser->p += len;
			/* "trueish" is one malformed word, not true and "ish" */
			if (parser->p < parser->end &&
				((*parser->p >= 'a' && *parser->p <= 'z') ||
				 (*parser->p >= 'A' && *parser->p <= 'Z') ||
				 (*parser->p >= '0' && *parser->p <= '9') || *parser->p == '_'))
				return NULL;
			value = new_value(literals[i].kind);
			value->boolean = literals[i].boolean;
			return value;
		}
	}
	return NULL;
}

/*
 * An array or object (parser->p at its opening bracket); NULL when
 * malformed or nested too deep.
 */
static JsonValue *
parse_container(JsonParser *parser, JsonKind kind)
{
	char		close = kind == JSON_KIND_OBJECT ? '}' : ']';
	JsonValue  *container;

	if (++parser->depth > JSON_MAX_DEPTH)
		return NULL;
	container = new_value(kind);
	parser->p++;
	skip_whitespace(parser);
	if (parser->p < parser->end && *parser->p == close)
	{
		parser->p++;
		parser->depth--;
		return container;
	}
	for (;;)
	{
		char	   *key = NULL;
		JsonValue  *member;

		if (kind == JSON_KIND_OBJECT)
		{
			if (parser->p >= parser->end || *parser->p != '"' ||
				(key = parse_string(parser)) == NULL)
				return NULL;
			skip_whitespace(parser);
			if (parser->p >= parser->end || *parser->p != ':')
				return NULL;
			parser->p++;
		}
		if ((member = parse_value(parser)) == NULL)
			return NULL;
		add_member(container, key, member);
		skip_whitespace(parser);
		if (parser->p >= parser->end)
			return NULL;
		if (*parser->p == close)
			break;
		if (*parser->p != ',')
			return NULL;
		parser->p++;
		skip_whitespace(parser);
	}
	parser->p++;
	parser->depth--;
	return container;
}

/* any value, after optional whitespace; NULL when malformed */
static JsonValue *
parse_value(JsonParser *parser)
{
	skip_whitespace(parser);
	if (parser->p >= parser->end)
		return NULL;
	switch (*parser->p)
	{
		case '{':
			return parse_container(parser, JSON_KIND_OBJECT);
		case '[':
			return parse_container(parser, JSON_KIND_ARRAY);
		case '"':
			{
				char	   *text = parse_string(parser);
				JsonValue  *value;

				if (text == NULL)
					return NULL;
				value = new_value(JSON_KIND_STRING);
				value->text = text;
				return value;
			}
		case '-':
		case '0':
		case '1':
		case '2':
		case '3':
		case '4':
		case '5':
		case '6':
		case '7':
		case '8':
		case '9':
			return parse_number(parser);
		default:
			return parse_literal(parser);
	}
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
	JsonParser	parser;
	JsonValue  *root;

	if (text == NULL || len == 0 || len > JSON_MAX_LENGTH)
		return NULL;
	parser.p = text;
	parser.end = text + len;
	parser.depth = 0;
	parser.utf8 = GetDatabaseEncoding() == PG_UTF8;
	initStringInfo(&parser.buf);
	root = parse_value(&parser);
	if (root != NULL)
	{
		skip_whitespace(&parser);
		if (parser.p != parser.end)
			root = NULL;
	}
	pfree(parser.buf.data);
	return root;
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
