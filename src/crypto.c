/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  Request signing and signature checking helpers: HMAC-SHA256 as hex
 *	  (OpenSSL's one-shot HMAC, not deprecated in OpenSSL 3), constant-time
 *	  comparison of hex signatures for webhooks, and RFC 3986 escaping of
 *	  query values without a CURL handle.
 *
 * None of these functions raises an ERROR (short of palloc failing): they
 * run in the sync worker outside transactions.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/crypto.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "crypto.h"

/*
 * Compute HMAC-SHA256(key, msg) and write it to out as 64 hex digits and a
 * NUL, lower case (Shopee, TikTok, webhooks) or upper case (Lazada).  The
 * key is used as the bytes given: callers must not hex-decode partner keys.
 * Returns false, with out set to the empty string, if OpenSSL fails or a
 * length does not fit its int parameters.
 */
bool
hmac_sha256_hex(const void *key, size_t keylen,
				const void *msg, size_t msglen,
				bool upper_case, char out[HMAC_SHA256_HEX_LEN + 1])
{
	static const char lower_digits[] = "0123456789abcdef";
	static const char upper_digits[] = "0123456789ABCDEF";
	const char *digits = upper_case ? upper_digits : lower_digits;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	unsigned int i;

	out[0] = '\0';
	if (keylen > INT_MAX)
		return false;

	/* OpenSSL wants a non-NULL pointer even for empty inputs */
	if (HMAC(EVP_sha256(), key ? key : "", (int) keylen,
			 (const unsigned char *) (msg ? msg : ""), msglen,
			 md, &mdlen) == NULL || mdlen != HMAC_SHA256_HEX_LEN / 2)
		return false;

	for (i = 0; i < mdlen; i++)
	{
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 0x0F];
	}
	out[2 * mdlen] = '\0';
	OPENSSL_cleanse(md, sizeof(md));
	return true;
}

/*
 * Append value to buf escaped for a URL query: RFC 3986 unreserved bytes
 * (A-Z a-z 0-9 - . _ ~) as they are, every other byte as %XX in upper-case
 * hex, as curl_easy_escape does.  A NULL value appends nothing.
 */
void
url_escape_append(StringInfo buf, const char *value)
{
	static const char digits[] = "0123456789ABCDEF";
	const unsigned char *p;

	if (value == NULL)
		return;
	for (p = (const unsigned char *) value; *p != '\0'; p++)
	{
		unsigned char c = *p;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(buf, (char) c);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, digits[c >> 4]);
			appendStringInfoChar(buf, digits[c & 0x0F]);
		}
	}
}
