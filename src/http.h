/*-------------------------------------------------------------------------
 *
 * http.h
 *	  A libcurl multi-interface driver for the sync worker: many requests in
 *	  flight on one thread, their sockets watched through one epoll file
 *	  descriptor that the worker waits on together with its latch.
 *	  Finished transfers are handed back by the caller's own loop, never
 *	  from inside a libcurl callback.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVSYNC_HTTP_H
#define INVSYNC_HTTP_H

#include "adapter.h"

/* bytes of response header lines kept for the adapter */
#define HTTP_MAX_RESPONSE_HEADERS 4096

typedef struct HttpEngine HttpEngine;
typedef struct HttpTransfer HttpTransfer;

/* how a request ended, handed to the completion callback */
typedef struct HttpResult
{
	HttpResponseView response;	/* status 0: no response */
	int			curl_code;		/* CURLE_OK when a response arrived */
	const char *transport_error;	/* curl's message, or NULL */
	bool		request_sent;	/* false: failed before any byte was sent */
	double		latency_ms;
} HttpResult;

extern HttpEngine *http_engine_create(void);
extern int	http_engine_fd(HttpEngine *engine);
extern long http_engine_timeout_ms(HttpEngine *engine);
extern int	http_engine_running(HttpEngine *engine);
extern void http_engine_start(HttpEngine *engine, const HttpRequestSpec *spec,
							  const char *correlation_id, bool fresh_connection,
							  void *request_arg, MemoryContext context);
extern void http_engine_drive(HttpEngine *engine);
extern HttpTransfer *http_engine_take_finished(HttpEngine *engine,
											   const HttpResult **result,
											   void **request_arg);
extern void http_transfer_free(HttpTransfer *transfer);
extern void http_engine_abort_all(HttpEngine *engine);

#endif							/* INVSYNC_HTTP_H */
