/*-------------------------------------------------------------------------
 *
 * endpoint.h
 *	  Which marketplace base URLs invsync may send credentials to.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/endpoint.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVSYNC_ENDPOINT_H
#define INVSYNC_ENDPOINT_H

#include "postgres.h"

/* longest base URL accepted, in bytes */
#define ENDPOINT_BASE_URL_MAX	512

typedef enum EndpointVerdict
{
	ENDPOINT_OK = 0,
	ENDPOINT_MALFORMED,			/* not a URL invsync can build requests on */
	ENDPOINT_INSECURE			/* plain http while it is not allowed */
} EndpointVerdict;

extern EndpointVerdict endpoint_check_base_url(const char *url,
											   bool allow_http,
											   const char **reason);

#endif							/* INVSYNC_ENDPOINT_H */
