/*-------------------------------------------------------------------------
 *
 * crypto.h
 *	  Request signing and signature checking helpers: HMAC-SHA256 as hex,
 *	  constant-time comparison of hex signatures, and URL escaping of query
 *	  values.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/crypto.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVSYNC_CRYPTO_H
#define INVSYNC_CRYPTO_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* hex digits of a SHA-256 digest, without the terminating NUL */
#define HMAC_SHA256_HEX_LEN		64

extern bool hmac_sha256_hex(const void *key, size_t keylen,
							const void *msg, size_t msglen,
							bool upper_case,
							char out[HMAC_SHA256_HEX_LEN + 1]);
extern void url_escape_append(StringInfo buf, const char *value);

#endif							/* INVSYNC_CRYPTO_H */
