--
-- json_parsing: the worker's JSON parser (src/json.c), through an
-- adapter reading Shopee answers.  A document is malformed for it exactly
-- when PostgreSQL's jsonb refuses it (numbers, literals, separators,
-- escapes, surrogate pairs, \u0000, raw control characters, trailing
-- text), and strings come out de-escaped as jsonb has them; nesting deeper
-- than 64 is malformed, whatever jsonb says.
--
\set VERBOSITY terse
-- whether jsonb takes a document
CREATE FUNCTION pg_temp.jsonb_takes(p_text text) RETURNS boolean
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM p_text::jsonb;
	RETURN true;
EXCEPTION WHEN OTHERS THEN
	RETURN false;
END
$$;
-- a Shopee success answer carrying p_value and request id p_id
CREATE FUNCTION pg_temp.answer(p_value text, p_id text DEFAULT '"r"') RETURNS text
	LANGUAGE sql AS $$
	SELECT '{"error":"","message":"","request_id":' || p_id ||
		   ',"response":{"failure_list":[],"success_list":[],"x":' || p_value || '}}'
$$;
-- what the adapter makes of an answer: its request id, or 'malformed'
CREATE FUNCTION pg_temp.read(p_body text) RETURNS text
	LANGUAGE sql AS $$
	SELECT CASE WHEN j->>'error_code' = 'malformed_response' THEN 'malformed'
				ELSE coalesce(j->>'request_id', '(none)') END
	  FROM invsync._adapter_stock_response('shopee',
			'[{"listing_id": 1, "item_id": "1", "model_id": "0", "level": 1}]', 200, p_body) j
$$;

-- values: taken or refused, as jsonb does
SELECT v AS value, pg_temp.read(pg_temp.answer(v)) <> 'malformed' AS parsed,
	   pg_temp.jsonb_takes(pg_temp.answer(v)) AS jsonb
  FROM unnest(ARRAY[
		'0', '-0', '12', '-12', '1.5', '1.50e-3', '1E+5', '1e5', '0.0',
		'01', '-01', '00', '1.', '.5', '1e', '1e+', '-', '+1', '1x', '0x1F', '1.5.2',
		'true', 'false', 'null', 'tru', 'truex', 'nul', 'True', 'NULL',
		'"a"', '""', '"\"\\\/\b\f\n\r\t"', '"\u00e9"', '"\ud83d\ude00"',
		'"\u0000"', '"\ud83d"', '"\ude00"', '"\ud83dx"', '"\ud83d\u0041"',
		'"\x"', '"\u12"', '"\u12G4"', E'"a\tb"', E'"a\nb"', '"abc',
		'[]', '[1,2]', ' [ 1 , 2 ] ', '[1,]', '[,1]', '[1 2]', '{}', '{"a":1}',
		'{"a":1,}', '{"a" 1}', '{1:2}', '{"a":1 "b":2}', '{"a":{"b":[true,null]}}',
		E'\t\r\n 7 \n']) v
 ORDER BY 1;

-- the whole document: trailing text, surrounding whitespace, nothing, two
-- documents; a string is JSON, but not the object an answer must be
SELECT d AS document, pg_temp.read(d) AS read, pg_temp.jsonb_takes(d) AS jsonb
  FROM unnest(ARRAY[
		pg_temp.answer('1') || ' ', E'\n ' || pg_temp.answer('1'),
		pg_temp.answer('1') || ' x', pg_temp.answer('1') || '}', pg_temp.answer('1') || ',',
		' ', '{}{}', '"just a string"']) d
 ORDER BY 1;

-- strings de-escaped as jsonb has them
SELECT id, pg_temp.read(pg_temp.answer('0', id)) AS read,
	   pg_temp.read(pg_temp.answer('0', id)) = (pg_temp.answer('0', id)::jsonb)->>'request_id'
	   AS as_jsonb
  FROM unnest(ARRAY['"plain"', '"caf\u00e9 \u00E9"', '"\ud83d\ude00 \u263a"',
					'"q\"b\\s\/"', '"mixed \u0041\u00df\u4e2d\ud834\udd1e end"',
					'"raw é ☺ 😀"', '"\u0041\u0020x\/"']) id;

-- nesting: 64 levels parse, 65 are malformed
SELECT pg_temp.read(pg_temp.answer(repeat('[', 62) || repeat(']', 62))) AS depth_64,
	   pg_temp.read(pg_temp.answer(repeat('[', 63) || repeat(']', 63))) AS depth_65,
	   pg_temp.jsonb_takes(pg_temp.answer(repeat('[', 63) || repeat(']', 63))) AS jsonb_65;
