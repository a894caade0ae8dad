/*-------------------------------------------------------------------------
 *
 * http.c
 *	  libcurl multi-interface driver used by the sync worker.
 *
 * libcurl tells us, through CURLMOPT_SOCKETFUNCTION, which sockets to watch;
 * we keep them in one epoll set whose file descriptor the worker adds to its
 * WaitEventSet next to its latch, so one wait covers commits announced by
 * backends, postmaster death and network activity, with no polling sleep.
 * CURLMOPT_TIMERFUNCTION gives the deadline libcurl wants to be called back
 * at, which bounds the worker's wait.  One multi handle lives as long as the
 * worker, so connections and TLS sessions are reused across requests.
 *
 * Transport failures are results, never ERRORs: the worker records them as
 * attempts and retries.  Response bodies are capped, so a misbehaving
 * server cannot exhaust memory.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <curl/curl.h>

#include "lib/ilist.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "http.h"
#include "invsync.h"

/* larger marketplace answers are cut (and then fail to parse, a retry) */
#define HTTP_MAX_RESPONSE_BYTES (1024 * 1024)

/* CURLOPT_PROTOCOLS_STR */
#if LIBCURL_VERSION_NUM < 0x075500
#error "invsync needs libcurl 7.85 or later"
#endif

struct HttpEngine
{
	CURLM	   *multi;
	int			epoll_fd;
	TimestampTz timer_deadline; /* 0: libcurl wants no timer */
	int			running;		/* transfers started and not finished */
	dlist_head	in_flight;		/* HttpTransfer, added to the multi handle */
	dlist_head	finished;		/* HttpTransfer, done, not yet taken */
	MemoryContext context;		/* transfers and their buffers */

	/*
	 * Easy handles of finished transfers, reset, for the next requests:
	 * making and freeing one per request cost several allocations of
	 * libcurl's per-transfer state and buffers.
	 */
	CURL	  **idle_handles;
	int			idle_count;
	int			idle_room;
};

/*
 * One request, from http_engine_start until the caller frees its
 * completion.  Its context holds the transfer, the response body and the
 * header list's strings; the easy handle and the curl_slist are libcurl's:
 * the list is freed with it, the handle goes back to the engine's idle
 * handles.
 */
struct HttpTransfer
{
	dlist_node	node;
	HttpEngine *engine;
	CURL	   *easy;
	struct curl_slist *headers;
	StringInfoData body;
	size_t		response_headers_len;
	bool		in_multi;		/* added to the multi handle */
	HttpResult	result;			/* filled when it finished */
	void	   *request_arg;
	MemoryContext context;
	/* last, and not zeroed: each holds a string from its first byte */
	char		error_buffer[CURL_ERROR_SIZE];
	char		response_headers[HTTP_MAX_RESPONSE_HEADERS];	/* the last
																 * response's */
};

/*
 * Every libcurl setting goes through this check: a failure to configure a
 * handle is a bug or an unusable libcurl build, not a marketplace problem.
 */
#define CURL_SETOPT(handle, option, value) \
	do { \
		CURLcode	setopt_rc = curl_easy_setopt((handle), (option), (value)); \
		if (setopt_rc != CURLE_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION), \
					 errmsg("could not set libcurl option %s: %s", \
							#option, curl_easy_strerror(setopt_rc)))); \
	} while (0)

#define CURLM_CHECK(call) \
	do { \
		CURLMcode	multi_rc = (call); \
		if (multi_rc != CURLM_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION), \
					 errmsg("libcurl multi call failed: %s", \
							curl_multi_strerror(multi_rc)))); \
	} while (0)

/*
 * libcurl asks us to watch, re-arm or forget a socket.  A socket it already
 * told us about carries a mark (curl_multi_assign), so each change is one
 * epoll_ctl: libcurl forgets the mark when it forgets the socket, which is
 * also when we take it out of the set.
 */
static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *engine_arg,
				void *socket_arg)
{
	HttpEngine *engine = (HttpEngine *) engine_arg;
	struct epoll_event event;
	int			operation;

	if (what == CURL_POLL_REMOVE)
	{
		/* the socket may already be closed; ENOENT/EBADF are harmless */
		(void) epoll_ctl(engine->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
		return 0;
	}

	memset(&event, 0, sizeof(event));
	event.data.fd = fd;
	if (what & CURL_POLL_IN)
		event.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		event.events |= EPOLLOUT;

	operation = (socket_arg != NULL) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(engine->epoll_fd, operation, fd, &event) != 0)
	{
		/* a set out of step with the mark: the other operation fits */
		operation = (operation == EPOLL_CTL_ADD) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
		if (epoll_ctl(engine->epoll_fd, operation, fd, &event) != 0)
		{
			elog(WARNING, "invsync: could not watch socket %d: %m", fd);
			return 0;
		}
	}
	if (socket_arg == NULL)
		(void) curl_multi_assign(engine->multi, fd, engine);
	return 0;
}

/* libcurl asks to be called back after timeout_ms (-1: never) */
static int
timer_callback(CURLM *multi, long timeout_ms, void *engine_arg)
{
	HttpEngine *engine = (HttpEngine *) engine_arg;

	if (timeout_ms < 0)
		engine->timer_deadline = 0;
	else
		engine->timer_deadline =
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/* libcurl hands over response bytes: keep them, up to the cap */
static size_t
write_callback(char *data, size_t size, size_t count, void *transfer_arg)
{
	HttpTransfer *transfer = (HttpTransfer *) transfer_arg;
	size_t		bytes = size * count;
	size_t		room = HTTP_MAX_RESPONSE_BYTES - transfer->body.len;
	MemoryContext old = MemoryContextSwitchTo(transfer->context);

	appendBinaryStringInfo(&transfer->body, data, Min(bytes, room));
	MemoryContextSwitchTo(old);
	/* report the whole chunk taken: a cut body fails to parse, a retry */
	return bytes;
}

/*
 * Keep the header lines of the last response (a status line starts them
 * anew: a 100 Continue or a proxy's answer may come first), up to
 * HTTP_MAX_RESPONSE_HEADERS bytes; the lines past that are dropped whole.
 * Nothing is allocated in the callback.
 */
static size_t
header_callback(char *data, size_t size, size_t count, void *transfer_arg)
{
	HttpTransfer *transfer = (HttpTransfer *) transfer_arg;
	size_t		bytes = size * count;

	if (bytes >= 5 && strncmp(data, "HTTP/", 5) == 0)
		transfer->response_headers_len = 0;
	else if (transfer->response_headers_len + bytes < sizeof(transfer->response_headers))
	{
		memcpy(transfer->response_headers + transfer->response_headers_len, data, bytes);
		transfer->response_headers_len += bytes;
	}
	transfer->response_headers[transfer->response_headers_len] = '\0';
	return bytes;
}

/*
 * Create the engine, once per worker.  It lives in TopMemoryContext: the
 * multi handle and its connection cache outlast every error the worker
 * recovers from.
 */
HttpEngine *
http_engine_create(void)
{
	HttpEngine *engine;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not initialize libcurl")));

	engine = MemoryContextAllocZero(TopMemoryContext, sizeof(HttpEngine));
	dlist_init(&engine->in_flight);
	dlist_init(&engine->finished);
	engine->context = AllocSetContextCreate(TopMemoryContext,
											"invsync http transfers",
											ALLOCSET_DEFAULT_SIZES);
	engine->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (engine->epoll_fd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create epoll set: %m")));

	engine->multi = curl_multi_init();
	if (engine->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not create a libcurl multi handle")));
	CURLM_CHECK(curl_multi_setopt(engine->multi, CURLMOPT_SOCKETFUNCTION, socket_callback));
	CURLM_CHECK(curl_multi_setopt(engine->multi, CURLMOPT_SOCKETDATA, engine));
	CURLM_CHECK(curl_multi_setopt(engine->multi, CURLMOPT_TIMERFUNCTION, timer_callback));
	CURLM_CHECK(curl_multi_setopt(engine->multi, CURLMOPT_TIMERDATA, engine));
	/* keep-alive connections to reuse: a few per marketplace host */
	CURLM_CHECK(curl_multi_setopt(engine->multi, CURLMOPT_MAXCONNECTS,
								  (long) Max(invsync_max_in_flight, 8)));
	engine->idle_room = Max(invsync_max_in_flight, 8);
	engine->idle_handles = MemoryContextAllocZero(TopMemoryContext,
												  engine->idle_room * sizeof(CURL *));
	return engine;
}

/* the epoll set to wait on for socket activity */
int
http_engine_fd(HttpEngine *engine)
{
	return engine->epoll_fd;
}

/* transfers started and not yet finished */
int
http_engine_running(HttpEngine *engine)
{
	return engine->running;
}

/* milliseconds until libcurl wants to be called back; -1 for never */
long
http_engine_timeout_ms(HttpEngine *engine)
{
	long		secs;
	int			usecs;

	if (engine->timer_deadline == 0)
		return -1;
	TimestampDifference(GetCurrentTimestamp(), engine->timer_deadline,
						&secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}

/*
 * invsync.test_connect_to as the list CURLOPT_CONNECT_TO takes, made again
 * when the setting changes.  A list is never freed: transfers in flight may
 * still point at it, and the setting exists for tests only.
 */
static struct curl_slist *
test_connect_to_list(void)
{
	static char *made_from = NULL;
	static struct curl_slist *list = NULL;
	char	   *copy;
	char	   *entry;
	char	   *saveptr = NULL;

	if (made_from != NULL && strcmp(made_from, invsync_test_connect_to) == 0)
		return list;

	list = NULL;
	copy = pstrdup(invsync_test_connect_to);
	for (entry = strtok_r(copy, ",", &saveptr); entry != NULL;
		 entry = strtok_r(NULL, ",", &saveptr))
	{
		list = curl_slist_append(list, entry);
		if (list == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory building invsync.test_connect_to")));
	}
	pfree(copy);
	made_from = MemoryContextStrdup(TopMemoryContext, invsync_test_connect_to);
	return list;
}

/*
 * Give libcurl the URL's origin (scheme://host[:port]) as its URL and the
 * path with the query as the request target: the request line and Host
 * header are the same bytes, but libcurl no longer parses, checks and
 * prints a long signed query several times, a character at a time, which
 * was a third of its instructions a request.  A plain-http proxy needs the
 * whole URL in the request line, so through one (http_proxy, all_proxy;
 * https goes through a tunnel) the URL is given whole.
 */
static void
set_request_url(CURL *easy, const char *url)
{
	/* the environment a process started with: read once */
	static int	proxy_in_environment = -1;
	const char *authority = strstr(url, "://");
	const char *target = authority ? strpbrk(authority + 3, "/?") : NULL;

	if (proxy_in_environment < 0)
	{
		const char *proxy_variables[] = {"http_proxy", "all_proxy", "ALL_PROXY"};
		int			i;

		proxy_in_environment = 0;
		for (i = 0; i < lengthof(proxy_variables); i++)
		{
			const char *proxy = getenv(proxy_variables[i]);

			if (proxy != NULL && proxy[0] != '\0')
				proxy_in_environment = 1;
		}
	}
	if (target == NULL || *target != '/' ||
		(proxy_in_environment && pg_strncasecmp(url, "http://", 7) == 0))
	{
		CURL_SETOPT(easy, CURLOPT_URL, url);
		return;
	}
	/* libcurl copies both strings */
	CURL_SETOPT(easy, CURLOPT_URL, pnstrdup(url, target - url));
	CURL_SETOPT(easy, CURLOPT_REQUEST_TARGET, target);
}

/*
 * Start one request.  The spec's buffers must stay valid until the request
 * completes (the worker keeps them in the request's own memory context).
 *
 * When a reused keep-alive connection dies before any answer, libcurl sends
 * the request again on a new connection by itself, even a POST that the
 * server may already have executed.  fresh_connection sends on a new
 * connection, where libcurl never does that: for a request that must not
 * arrive twice, such as a token refresh spending a single-use token.
 */
void
http_engine_start(HttpEngine *engine, const HttpRequestSpec *spec,
				  const char *correlation_id, bool fresh_connection,
				  void *request_arg)
{
	MemoryContext context;
	MemoryContext old;
	HttpTransfer *transfer;
	CURL	   *easy;
	char	   *header;
	int			i;

	context = AllocSetContextCreate(engine->context, "invsync http transfer",
									ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(context);
	transfer = palloc(sizeof(HttpTransfer));
	memset(transfer, 0, offsetof(HttpTransfer, error_buffer));
	transfer->error_buffer[0] = '\0';
	transfer->response_headers[0] = '\0';
	transfer->engine = engine;
	transfer->context = context;
	transfer->request_arg = request_arg;
	initStringInfo(&transfer->body);
	/* listed at once, so that an ERROR below leaves nothing unowned */
	dlist_push_tail(&engine->in_flight, &transfer->node);

	/* an idle handle was reset: every option below is set anew */
	if (engine->idle_count > 0)
		easy = engine->idle_handles[--engine->idle_count];
	else
		easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not create a libcurl handle")));
	transfer->easy = easy;

	set_request_url(easy, request_url(spec, false));

	/*
	 * https only, unless a superuser allowed plain http for tests
	 * (invsync._claim() already keeps shops with an http base URL from
	 * being sent to then); redirects are never followed.
	 */
	CURL_SETOPT(easy, CURLOPT_PROTOCOLS_STR,
				invsync_allow_insecure_http ? "http,https" : "https");
	CURL_SETOPT(easy, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	CURL_SETOPT(easy, CURLOPT_FOLLOWLOCATION, 0L);
	CURL_SETOPT(easy, CURLOPT_MAXREDIRS, 0L);
	if (invsync_test_connect_to != NULL && invsync_test_connect_to[0] != '\0')
		CURL_SETOPT(easy, CURLOPT_CONNECT_TO, test_connect_to_list());
	CURL_SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
	CURL_SETOPT(easy, CURLOPT_TIMEOUT_MS, (long) invsync_http_timeout_ms);
	CURL_SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) invsync_connect_timeout_ms);
	CURL_SETOPT(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	CURL_SETOPT(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (invsync_ca_file != NULL && invsync_ca_file[0] != '\0')
		CURL_SETOPT(easy, CURLOPT_CAINFO, invsync_ca_file);
	CURL_SETOPT(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	if (fresh_connection)
		CURL_SETOPT(easy, CURLOPT_FRESH_CONNECT, 1L);
	CURL_SETOPT(easy, CURLOPT_USERAGENT, "invsync/0.1");
	CURL_SETOPT(easy, CURLOPT_WRITEFUNCTION, write_callback);
	CURL_SETOPT(easy, CURLOPT_WRITEDATA, transfer);
	CURL_SETOPT(easy, CURLOPT_HEADERFUNCTION, header_callback);
	CURL_SETOPT(easy, CURLOPT_HEADERDATA, transfer);
	CURL_SETOPT(easy, CURLOPT_ERRORBUFFER, transfer->error_buffer);
	CURL_SETOPT(easy, CURLOPT_PRIVATE, transfer);

	if (strcmp(spec->method, "POST") == 0)
	{
		CURL_SETOPT(easy, CURLOPT_POST, 1L);
		/* the exact bytes that were signed, never re-encoded */
		CURL_SETOPT(easy, CURLOPT_POSTFIELDSIZE, (long) spec->body_len);
		CURL_SETOPT(easy, CURLOPT_POSTFIELDS, spec->body ? spec->body : "");
	}
	else
		CURL_SETOPT(easy, CURLOPT_HTTPGET, 1L);

	if (spec->content_type != NULL)
	{
		header = psprintf("Content-Type: %s", spec->content_type);
		transfer->headers = curl_slist_append(transfer->headers, header);
	}
	for (i = 0; i < spec->nheaders; i++)
	{
		header = psprintf("%s: %s", spec->headers[i].name, spec->headers[i].value);
		transfer->headers = curl_slist_append(transfer->headers, header);
	}
	header = psprintf("X-Correlation-ID: %s", correlation_id);
	transfer->headers = curl_slist_append(transfer->headers, header);
	/* no "Expect: 100-continue" round trip before small bodies */
	transfer->headers = curl_slist_append(transfer->headers, "Expect:");
	if (transfer->headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building request headers")));
	CURL_SETOPT(easy, CURLOPT_HTTPHEADER, transfer->headers);

	MemoryContextSwitchTo(old);

	CURLM_CHECK(curl_multi_add_handle(engine->multi, easy));
	transfer->in_multi = true;
	engine->running++;
}

/*
 * A transfer finished: take it off the multi handle and keep its result
 * for http_engine_take_finished.  Nothing of the caller's runs here.
 */
static void
finish_transfer(HttpEngine *engine, CURL *easy, CURLcode code)
{
	HttpTransfer *transfer;
	HttpResult *result;
	long		status = 0;
	long		request_size = 0;
	double		total_seconds = 0;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &transfer);
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
	curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &total_seconds);

	result = &transfer->result;
	memset(result, 0, sizeof(HttpResult));
	result->curl_code = code;
	result->response.status = (code == CURLE_OK) ? status : 0;
	result->response.body = transfer->body.data;
	result->response.body_len = transfer->body.len;
	result->response.headers = transfer->response_headers;
	result->request_sent = request_size > 0;
	result->latency_ms = total_seconds * 1000.0;
	if (code != CURLE_OK)
		result->transport_error = transfer->error_buffer[0]
			? transfer->error_buffer : curl_easy_strerror(code);

	curl_multi_remove_handle(engine->multi, easy);
	transfer->in_multi = false;
	engine->running--;
	dlist_delete(&transfer->node);
	dlist_push_tail(&engine->finished, &transfer->node);
}

/*
 * The next finished transfer, or NULL.  Its result and request_arg stay
 * valid until http_transfer_free; the caller owns it from here.
 */
HttpTransfer *
http_engine_take_finished(HttpEngine *engine, const HttpResult **result,
						  void **request_arg)
{
	HttpTransfer *transfer;

	if (dlist_is_empty(&engine->finished))
		return NULL;
	transfer = dlist_container(HttpTransfer, node,
							   dlist_pop_head_node(&engine->finished));
	*result = &transfer->result;
	*request_arg = transfer->request_arg;
	return transfer;
}

/*
 * Free a transfer taken with http_engine_take_finished.  Its easy handle,
 * off the multi handle, is reset to libcurl's defaults (it keeps no option,
 * callback or pointer of this request) and kept for the next request while
 * there is room.
 */
void
http_transfer_free(HttpTransfer *transfer)
{
	HttpEngine *engine = transfer->engine;

	if (transfer->easy != NULL)
	{
		Assert(!transfer->in_multi);
		if (engine->idle_count < engine->idle_room)
		{
			curl_easy_reset(transfer->easy);
			engine->idle_handles[engine->idle_count++] = transfer->easy;
		}
		else
			curl_easy_cleanup(transfer->easy);
	}
	curl_slist_free_all(transfer->headers);
	MemoryContextDelete(transfer->context);
}

/*
 * Abandon every transfer, in flight or finished and not taken: after an
 * ERROR, before the memory their requests point to is freed.  Requests
 * already sent may still be applied by the marketplace; the leases of
 * their rows outlast the HTTP timeout, so no newer level can overtake them.
 */
void
http_engine_abort_all(HttpEngine *engine)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &engine->in_flight)
	{
		HttpTransfer *transfer = dlist_container(HttpTransfer, node, iter.cur);

		dlist_delete(&transfer->node);
		if (transfer->in_multi)
			(void) curl_multi_remove_handle(engine->multi, transfer->easy);
		transfer->in_multi = false;
		http_transfer_free(transfer);
	}
	dlist_foreach_modify(iter, &engine->finished)
	{
		HttpTransfer *transfer = dlist_container(HttpTransfer, node, iter.cur);

		dlist_delete(&transfer->node);
		http_transfer_free(transfer);
	}
	engine->running = 0;
}

/*
 * Let libcurl make progress on every ready socket and on its timer, then
 * move the transfers that finished to the finished list.  Never blocks and
 * calls nothing of the caller's: the caller takes the finished transfers
 * afterwards, with http_engine_take_finished.
 */
void
http_engine_drive(HttpEngine *engine)
{
	struct epoll_event events[64];
	int			nevents;
	int			i;
	int			still_running;
	CURLMsg    *message;
	int			queued;

	nevents = epoll_wait(engine->epoll_fd, events, lengthof(events), 0);
	for (i = 0; i < nevents; i++)
	{
		int			flags = 0;

		if (events[i].events & EPOLLIN)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & EPOLLOUT)
			flags |= CURL_CSELECT_OUT;
		if (events[i].events & (EPOLLERR | EPOLLHUP))
			flags |= CURL_CSELECT_ERR;
		CURLM_CHECK(curl_multi_socket_action(engine->multi, events[i].data.fd,
											 flags, &still_running));
	}

	if (engine->timer_deadline != 0 &&
		GetCurrentTimestamp() >= engine->timer_deadline)
	{
		engine->timer_deadline = 0;
		CURLM_CHECK(curl_multi_socket_action(engine->multi, CURL_SOCKET_TIMEOUT,
											 0, &still_running));
	}

	while ((message = curl_multi_info_read(engine->multi, &queued)) != NULL)
	{
		if (message->msg == CURLMSG_DONE)
			finish_transfer(engine, message->easy_handle, message->data.result);
	}
}
