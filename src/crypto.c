/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  Request signing and signature checking helpers: HMAC-SHA256 as hex
 *	  (OpenSSL 3's EVP_MAC), constant-time comparison of hex signatures for
 *	  webhooks, and RFC 3986 escaping of query values without a CURL handle.
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

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "utils/memutils.h"

#include "crypto.h"

/*
 * One HMAC-SHA256 context for the life of the process, keyed anew for each
 * signature.  OpenSSL 3's one-shot HMAC() looks up the MAC and the digest
 * in its providers at every call: that lookup cost more than the signature
 * itself, and a push signs once.  NULL until first needed, or after a
 * failure to set it up (then tried again at the next call).
 */
static EVP_MAC_CTX *hmac_sha256_context = NULL;

/*
 * The key the context holds, so that the next signature with the same key
 * (the worker signs with a few app keys, one after another) reuses its
 * hashed pads: keying was half the cost of a signature.  Longer keys are
 * not kept; -1 when the context holds no known key.
 */
#define HMAC_KEPT_KEY_MAX 256
static unsigned char hmac_kept_key[HMAC_KEPT_KEY_MAX];
static ssize_t hmac_kept_key_len = -1;

static EVP_MAC_CTX *
get_hmac_sha256_context(void)
{
	EVP_MAC   *mac;
	OSSL_PARAM	params[2];
	static char digest[] = "SHA256";

	if (hmac_sha256_context != NULL)
		return hmac_sha256_context;

	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (mac == NULL)
		return NULL;
	hmac_sha256_context = EVP_MAC_CTX_new(mac);
	EVP_MAC_free(mac);			/* the context holds its own reference */
	hmac_kept_key_len = -1;
	if (hmac_sha256_context == NULL)
		return NULL;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_CTX_set_params(hmac_sha256_context, params))
	{
		EVP_MAC_CTX_free(hmac_sha256_context);
		hmac_sha256_context = NULL;
	}
	return hmac_sha256_context;
}

/*
 * Compute HMAC-SHA256(key, msg) and write it to out as 64 hex digits and a
 * NUL, lower case (Shopee, TikTok, webhooks) or upper case (Lazada).  The
 * key is used as the bytes given: callers must not hex-decode partner keys.
 * Returns false, with out set to the empty string, if OpenSSL fails.
 */
bool
hmac_sha256_hex(const void *key, size_t keylen,
				const void *msg, size_t msglen,
				bool upper_case, char out[HMAC_SHA256_HEX_LEN + 1])
{
	static const char lower_digits[] = "0123456789abcdef";
	static const char upper_digits[] = "0123456789ABCDEF";
	static const unsigned char empty[1] = {0};
	const char *digits = upper_case ? upper_digits : lower_digits;
	EVP_MAC_CTX *context = get_hmac_sha256_context();
	unsigned char md[EVP_MAX_MD_SIZE];
	size_t		mdlen = 0;
	size_t		i;
	bool		done;

	out[0] = '\0';
	if (context == NULL)
		return false;

	/*
	 * OpenSSL wants a non-NULL key even when it is empty; a NULL key to
	 * EVP_MAC_init would mean "keep the previous caller's".  A NULL
	 * pointer is taken as empty whatever length comes with it.
	 */
	if (key == NULL)
		keylen = 0;
	if (msg == NULL)
		msglen = 0;
	if (hmac_kept_key_len == (ssize_t) keylen &&
		(keylen == 0 || memcmp(hmac_kept_key, key, keylen) == 0))
		done = EVP_MAC_init(context, NULL, 0, NULL);
	else
	{
		OPENSSL_cleanse(hmac_kept_key, sizeof(hmac_kept_key));
		hmac_kept_key_len = -1;
		done = EVP_MAC_init(context, keylen > 0 ? key : empty, keylen, NULL);
		if (done && keylen <= HMAC_KEPT_KEY_MAX)
		{
			if (keylen > 0)
				memcpy(hmac_kept_key, key, keylen);
			hmac_kept_key_len = (ssize_t) keylen;
		}
	}
	done = done &&
		EVP_MAC_update(context, msglen > 0 ? msg : empty, msglen) &&
		EVP_MAC_final(context, md, &mdlen, sizeof(md)) &&
		mdlen == HMAC_SHA256_HEX_LEN / 2;
	if (done)
	{
		for (i = 0; i < mdlen; i++)
		{
			out[2 * i] = digits[md[i] >> 4];
			out[2 * i + 1] = digits[md[i] & 0x0F];
		}
		out[2 * mdlen] = '\0';
	}
	if (!done)
	{
		/* a failure may leave the context keyed otherwise: key it anew */
		OPENSSL_cleanse(hmac_kept_key, sizeof(hmac_kept_key));
		hmac_kept_key_len = -1;
	}
	OPENSSL_cleanse(md, sizeof(md));
	return done;
}

/*
 * Append value to buf escaped for a URL query: RFC 3986 unreserved bytes
 * (A-Z a-z 0-9 - . _ ~) as they are, every other byte as %XX in upper-case
 * hex, as curl_easy_escape does.  A NULL value appends nothing.  The room
 * for the worst case is made once and the bytes written in place: a form
 * body of XML escapes most of its bytes, and an append call for each was
 * most of its cost.
 */
void
url_escape_append(StringInfo buf, const char *value)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t		len;
	char	   *out;

	if (value == NULL)
		return;
	len = strlen(value);
	if (len > (size_t) (MaxAllocSize - 1) / 3)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value too long to escape for a URL: %zu bytes", len)));
	enlargeStringInfo(buf, (int) (3 * len));
	out = buf->data + buf->len;
	for (const unsigned char *p = (const unsigned char *) value; *p != '\0'; p++)
	{
		unsigned char c = *p;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~')
			*out++ = (char) c;
		else
		{
			*out++ = '%';
			*out++ = digits[c >> 4];
			*out++ = digits[c & 0x0F];
		}
	}
	*out = '\0';
	buf->len = out - buf->data;
}
