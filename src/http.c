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
#include <unistd.h>
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

/*
 * The settings (GUCs) an easy handle is configured with once, rather than
 * at every request; a change, seen at the next request, reconfigures each
 * handle as it is next used.
 */
typedef struct HandleSettings
{
	bool		allow_insecure_http;
	int			timeout_ms;
	int			connect_timeout_ms;
	char	   *ca_file;		/* NULL: libcurl's default */
	struct curl_slist *connect_to;	/* NULL: none */
} HandleSettings;

struct HttpEngine
{
	CURLM	   *multi;
	int			epoll_fd;
	TimestampTz timer_deadline; /* 0: libcurl wants no timer */
	int			running;		/* transfers started and not finished */
	dlist_head	in_flight;		/* HttpTransfer, added to the multi handle */
	dlist_head	finished;		/* HttpTransfer, done, not yet taken */

	/*
	 * Easy handles of finished transfers, for the next requests: making and
	 * freeing one per request cost several allocations of libcurl's
	 * per-transfer state and buffers.  Each keeps the settings it was
	 * configured with while they stay those of settings_generation.
	 */
	CURL	  **idle_handles;
	uint64	   *idle_generations;	/* of each idle handle's settings */
	int			idle_count;
	int			idle_room;
	HandleSettings settings;	/* the settings handles are configured with */
	uint64		settings_generation;	/* bumped when they change */

	/*
	 * The events each socket is registered for in the epoll set (0: not in
	 * it), by file descriptor, and whether libcurl watches it now.
	 */
	uint32	   *registered;
	bool	   *wanted;
	int			nsockets;		/* room of both arrays */
};

/*
 * One request, from http_engine_start until the caller frees its
 * completion.  The transfer and the response body are in the caller's
 * context; the easy handle and the curl_slist are libcurl's: the list is
 * freed with the transfer, the handle goes back to the engine's idle
 * handles.
 */
struct HttpTransfer
{
	dlist_node	node;
	HttpEngine *engine;
	CURL	   *easy;
	uint64		settings_generation;	/* the easy handle's */
	struct curl_slist *headers;
	StringInfoData body;
	size_t		response_headers_len;
	bool		in_multi;		/* added to the multi handle */
	HttpResult	result;			/* filled when it finished */
	void	   *request_arg;
	MemoryContext context;		/* the caller's, holding this */
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
 * The socket table's room for file descriptor fd, grown as needed.
 */
static void
socket_table_fit(HttpEngine *engine, curl_socket_t fd)
{
	int			room = engine->nsockets;
	uint32	   *registered;
	bool	   *wanted;

	if (fd < room)
		return;
	while (room <= fd)
		room *= 2;
	registered = MemoryContextAllocZero(TopMemoryContext, room * sizeof(uint32));
	wanted = MemoryContextAllocZero(TopMemoryContext, room * sizeof(bool));
	memcpy(registered, engine->registered, engine->nsockets * sizeof(uint32));
	memcpy(wanted, engine->wanted, engine->nsockets * sizeof(bool));
	pfree(engine->registered);
	pfree(engine->wanted);
	engine->registered = registered;
	engine->wanted = wanted;
	engine->nsockets = room;
}

/*
 * Put fd in the epoll set for events (0: take it out).  The table says
 * whether it is in; a set out of step with it (a socket closed behind our
 * back, whose number came back) is mended by the other operation.
 */
static void
socket_register(HttpEngine *engine, curl_socket_t fd, uint32 events)
{
	struct epoll_event event;
	int			operation;

	if (engine->registered[fd] == events)
		return;
	if (events == 0)
	{
		/* the socket may already be closed; ENOENT/EBADF are harmless */
		(void) epoll_ctl(engine->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
		engine->registered[fd] = 0;
		return;
	}
	memset(&event, 0, sizeof(event));
	event.events = events;
	event.data.fd = fd;
	operation = engine->registered[fd] != 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(engine->epoll_fd, operation, fd, &event) != 0)
	{
		operation = (operation == EPOLL_CTL_ADD) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
		if (epoll_ctl(engine->epoll_fd, operation, fd, &event) != 0)
		{
			elog(WARNING, "invsync: could not watch socket %d: %m", fd);
			engine->registered[fd] = 0;
			return;
		}
	}
	engine->registered[fd] = events;
}

/*
 * libcurl asks us to watch, re-arm or forget a socket.  A socket libcurl
 * forgets stays in the epoll set: a keep-alive connection is forgotten
 * after every answer and watched again at the next request, and taking it
 * out and putting it back were two system calls a request.  Should such a
 * socket become ready meanwhile (the server closed it), the drive takes it
 * out then; when libcurl closes it, close_socket does.
 */
static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *engine_arg,
				void *socket_arg)
{
	HttpEngine *engine = (HttpEngine *) engine_arg;
	uint32		events = 0;

	socket_table_fit(engine, fd);
	if (what == CURL_POLL_REMOVE)
	{
		engine->wanted[fd] = false;
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		events |= EPOLLOUT;
	socket_register(engine, fd, events);
	engine->wanted[fd] = true;
	return 0;
}

/* libcurl closes a socket (CURLOPT_CLOSESOCKETFUNCTION): out of the set first */
static int
close_socket(void *engine_arg, curl_socket_t fd)
{
	HttpEngine *engine = (HttpEngine *) engine_arg;

	if (fd < engine->nsockets)
	{
		socket_register(engine, fd, 0);
		engine->wanted[fd] = false;
	}
	return close(fd);
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
	engine->idle_generations = MemoryContextAllocZero(TopMemoryContext,
													  engine->idle_room * sizeof(uint64));
	engine->settings_generation = 1;
	engine->nsockets = 64;
	engine->registered = MemoryContextAllocZero(TopMemoryContext,
												engine->nsockets * sizeof(uint32));
	engine->wanted = MemoryContextAllocZero(TopMemoryContext,
											engine->nsockets * sizeof(bool));
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
		/* a kept handle may hold its last request's target */
		CURL_SETOPT(easy, CURLOPT_REQUEST_TARGET, NULL);
		return;
	}
	/* libcurl copies both strings */
	CURL_SETOPT(easy, CURLOPT_URL, pnstrdup(url, target - url));
	CURL_SETOPT(easy, CURLOPT_REQUEST_TARGET, target);
}

/*
 * Bring the engine's settings up to the GUCs' values; a change makes every
 * handle configured before it reconfigure at its next request.
 */
static void
refresh_settings(HttpEngine *engine)
{
	HandleSettings *settings = &engine->settings;
	const char *ca_file = (invsync_ca_file != NULL && invsync_ca_file[0] != '\0')
		? invsync_ca_file : NULL;
	struct curl_slist *connect_to =
		(invsync_test_connect_to != NULL && invsync_test_connect_to[0] != '\0')
		? test_connect_to_list() : NULL;

	if (settings->allow_insecure_http == invsync_allow_insecure_http &&
		settings->timeout_ms == invsync_http_timeout_ms &&
		settings->connect_timeout_ms == invsync_connect_timeout_ms &&
		settings->connect_to == connect_to &&
		(settings->ca_file == NULL ? ca_file == NULL :
		 ca_file != NULL && strcmp(settings->ca_file, ca_file) == 0))
		return;

	settings->allow_insecure_http = invsync_allow_insecure_http;
	settings->timeout_ms = invsync_http_timeout_ms;
	settings->connect_timeout_ms = invsync_connect_timeout_ms;
	settings->connect_to = connect_to;
	if (settings->ca_file != NULL)
		pfree(settings->ca_file);
	settings->ca_file = ca_file ? MemoryContextStrdup(TopMemoryContext, ca_file) : NULL;
	engine->settings_generation++;
}

/*
 * Set what every request of a handle shares: libcurl's defaults first
 * (a handle may come with an older configuration), then ours.
 */
static void
configure_handle(HttpEngine *engine, CURL *easy)
{
	const HandleSettings *settings = &engine->settings;

	curl_easy_reset(easy);

	/*
	 * https only, unless a superuser allowed plain http for tests
	 * (invsync._claim() already keeps shops with an http base URL from
	 * being sent to then); redirects are never followed.
	 */
	CURL_SETOPT(easy, CURLOPT_PROTOCOLS_STR,
				settings->allow_insecure_http ? "http,https" : "https");
	CURL_SETOPT(easy, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	CURL_SETOPT(easy, CURLOPT_FOLLOWLOCATION, 0L);
	CURL_SETOPT(easy, CURLOPT_MAXREDIRS, 0L);
	if (settings->connect_to != NULL)
		CURL_SETOPT(easy, CURLOPT_CONNECT_TO, settings->connect_to);
	CURL_SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
	CURL_SETOPT(easy, CURLOPT_TIMEOUT_MS, (long) settings->timeout_ms);
	CURL_SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) settings->connect_timeout_ms);
	CURL_SETOPT(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	CURL_SETOPT(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (settings->ca_file != NULL)
		CURL_SETOPT(easy, CURLOPT_CAINFO, settings->ca_file);
	CURL_SETOPT(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	CURL_SETOPT(easy, CURLOPT_USERAGENT, "invsync/0.1");
	CURL_SETOPT(easy, CURLOPT_WRITEFUNCTION, write_callback);
	CURL_SETOPT(easy, CURLOPT_HEADERFUNCTION, header_callback);
	CURL_SETOPT(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
	CURL_SETOPT(easy, CURLOPT_CLOSESOCKETDATA, engine);
}

/*
 * Start one request.  The spec's buffers must stay valid until the request
 * completes, and so must context, which holds the transfer and the
 * response (the worker gives the request's own memory context for both).
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
				  void *request_arg, MemoryContext context)
{
	MemoryContext old;
	HttpTransfer *transfer;
	CURL	   *easy;
	uint64		generation = 0;
	char	   *header;
	int			i;

	refresh_settings(engine);
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

	if (engine->idle_count > 0)
	{
		engine->idle_count--;
		easy = engine->idle_handles[engine->idle_count];
		generation = engine->idle_generations[engine->idle_count];
	}
	else
		easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not create a libcurl handle")));
	transfer->easy = easy;
	if (generation != engine->settings_generation)
		configure_handle(engine, easy);
	transfer->settings_generation = engine->settings_generation;

	/* every option a request sets: none is left from the handle's last one */
	set_request_url(easy, request_url(spec, false));
	CURL_SETOPT(easy, CURLOPT_FRESH_CONNECT, fresh_connection ? 1L : 0L);
	CURL_SETOPT(easy, CURLOPT_WRITEDATA, transfer);
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
 * off the multi handle, is kept for the next request while there is room,
 * with no pointer into this request left in it.
 */
void
http_transfer_free(HttpTransfer *transfer)
{
	HttpEngine *engine = transfer->engine;
	CURL	   *easy = transfer->easy;

	if (easy != NULL)
	{
		Assert(!transfer->in_multi);
		if (engine->idle_count < engine->idle_room &&
			curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL) == CURLE_OK &&
			curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL) == CURLE_OK &&
			curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL) == CURLE_OK &&
			curl_easy_setopt(easy, CURLOPT_HEADERDATA, NULL) == CURLE_OK &&
			curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL) == CURLE_OK &&
			curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L) == CURLE_OK)
		{
			engine->idle_handles[engine->idle_count] = easy;
			engine->idle_generations[engine->idle_count] = transfer->settings_generation;
			engine->idle_count++;
		}
		else
			curl_easy_cleanup(easy);
		transfer->easy = NULL;
	}
	curl_slist_free_all(transfer->headers);
	transfer->headers = NULL;
	pfree(transfer->body.data);
	pfree(transfer);
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
		curl_socket_t fd = events[i].data.fd;
		int			flags = 0;

		/* a kept socket libcurl does not watch now: its news can wait */
		if (fd >= engine->nsockets || !engine->wanted[fd])
		{
			if (fd < engine->nsockets)
				socket_register(engine, fd, 0);
			else
				(void) epoll_ctl(engine->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
			continue;
		}
		if (events[i].events & EPOLLIN)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & EPOLLOUT)
			flags |= CURL_CSELECT_OUT;
		if (events[i].events & (EPOLLERR | EPOLLHUP))
			flags |= CURL_CSELECT_ERR;
		CURLM_CHECK(curl_multi_socket_action(engine->multi, fd, flags,
											 &still_running));
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
