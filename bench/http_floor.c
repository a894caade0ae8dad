/*-------------------------------------------------------------------------
 *
 * http_floor.c
 *	  The CPU a request costs libcurl and the kernel alone: the request the
 *	  sync worker sends, posted again and again with nothing else around it.
 *
 * bench/sync.sh runs it beside each backlog run, against the same nginx
 * sink, at the worker's concurrency, with the same libcurl options that
 * shape the bytes and the connections (keep-alive, no Expect, the same
 * headers, a correlation id per request) and the worker's way of driving
 * libcurl: the multi interface with curl_multi_socket_action and one epoll
 * set that keeps a socket libcurl forgets until it closes it, easy handles
 * reused, the URL's origin given apart from the path and query (the
 * request target).  Nothing is signed, built, claimed or recorded:
 * what it spends is the part of a push no SQL or adapter change can save.
 *
 * Usage: http_floor URL BODY_FILE CONCURRENCY REQUESTS [HEADER ...]
 * Prints one line: requests, seconds, user and system CPU microseconds a
 * request.  Exits non-zero if any answer is not 2xx.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  bench/http_floor.c
 *
 *-------------------------------------------------------------------------
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONCURRENCY 1024
#define MAX_HEADERS 16
#define MAX_BODY (1024 * 1024)

#define MAX_SOCKETS 65536

typedef struct FloorState
{
	CURLM	   *multi;
	int			epoll_fd;
	long		timeout_ms;		/* libcurl's timer, -1 for none */
	unsigned int registered[MAX_SOCKETS];	/* epoll events per socket */
	unsigned char wanted[MAX_SOCKETS];	/* libcurl watches it now */
} FloorState;

static void
socket_register(FloorState *state, curl_socket_t fd, unsigned int events)
{
	struct epoll_event event;
	int			operation = state->registered[fd] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

	if (state->registered[fd] == events)
		return;
	if (events == 0)
		(void) epoll_ctl(state->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
	else
	{
		memset(&event, 0, sizeof(event));
		event.events = events;
		event.data.fd = fd;
		if (epoll_ctl(state->epoll_fd, operation, fd, &event) != 0)
			(void) epoll_ctl(state->epoll_fd,
							 operation == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
							 fd, &event);
	}
	state->registered[fd] = events;
}

static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *state_arg,
				void *socket_arg)
{
	FloorState *state = state_arg;
	unsigned int events = 0;

	(void) easy;
	(void) socket_arg;
	if (fd >= MAX_SOCKETS)
		abort();
	if (what == CURL_POLL_REMOVE)
	{
		state->wanted[fd] = 0;
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		events |= EPOLLOUT;
	socket_register(state, fd, events);
	state->wanted[fd] = 1;
	return 0;
}

static int
close_socket(void *state_arg, curl_socket_t fd)
{
	FloorState *state = state_arg;

	socket_register(state, fd, 0);
	state->wanted[fd] = 0;
	return close(fd);
}

static int
timer_callback(CURLM *multi, long timeout_ms, void *state_arg)
{
	(void) multi;
	((FloorState *) state_arg)->timeout_ms = timeout_ms;
	return 0;
}

static size_t
discard(char *data, size_t size, size_t count, void *arg)
{
	(void) data;
	(void) arg;
	return size * count;
}

static double
cpu_seconds(const struct timeval *tv)
{
	return tv->tv_sec + tv->tv_usec / 1e6;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* (re)start one request on a handle, with a correlation id of its own */
static void
start_request(FloorState *state, CURL *easy, const char *url,
			  const char *body, long body_len, char **headers, int nheaders,
			  long serial)
{
	struct curl_slist *list = NULL;
	char		correlation[64];
	int			i;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &list);
	curl_slist_free_all(list);
	list = NULL;
	for (i = 0; i < nheaders; i++)
		list = curl_slist_append(list, headers[i]);
	snprintf(correlation, sizeof(correlation),
			 "X-Correlation-ID: floor-%08ld-0000-4000-8000-000000000000", serial);
	list = curl_slist_append(list, correlation);
	list = curl_slist_append(list, "Expect:");

	/* the worker's way: the origin as the URL, the rest as the request target */
	{
		const char *target = strpbrk(strstr(url, "://") + 3, "/?");
		char		origin[1024];

		snprintf(origin, sizeof(origin), "%.*s", (int) (target - url), url);
		curl_easy_setopt(easy, CURLOPT_URL, origin);
		curl_easy_setopt(easy, CURLOPT_REQUEST_TARGET, target);
	}
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, body_len);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *) list);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "invsync/0.1");
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, state);
	curl_multi_add_handle(state->multi, easy);
}

int
main(int argc, char **argv)
{
	static FloorState state;
	static char body[MAX_BODY];
	long		body_len;
	long		concurrency;
	long		total;
	long		started = 0;
	long		finished = 0;
	long		failed = 0;
	int			running = 0;
	CURL	   *handles[MAX_CONCURRENCY];
	FILE	   *body_file;
	struct rusage before;
	struct rusage after;
	double		t0;
	double		elapsed;
	long		i;

	if (argc < 5 || argc - 5 > MAX_HEADERS)
	{
		fprintf(stderr, "usage: %s URL BODY_FILE CONCURRENCY REQUESTS [HEADER ...]\n",
				argv[0]);
		return 2;
	}
	body_file = fopen(argv[2], "rb");
	if (body_file == NULL)
	{
		perror(argv[2]);
		return 2;
	}
	body_len = (long) fread(body, 1, sizeof(body), body_file);
	fclose(body_file);
	concurrency = atol(argv[3]);
	total = atol(argv[4]);
	if (concurrency < 1 || concurrency > MAX_CONCURRENCY || total < concurrency)
	{
		fprintf(stderr, "CONCURRENCY must be 1..%d and REQUESTS at least that\n",
				MAX_CONCURRENCY);
		return 2;
	}

	curl_global_init(CURL_GLOBAL_DEFAULT);
	state.multi = curl_multi_init();
	state.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	state.timeout_ms = -1;
	curl_multi_setopt(state.multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(state.multi, CURLMOPT_SOCKETDATA, &state);
	curl_multi_setopt(state.multi, CURLMOPT_TIMERFUNCTION, timer_callback);
	curl_multi_setopt(state.multi, CURLMOPT_TIMERDATA, &state);
	curl_multi_setopt(state.multi, CURLMOPT_MAXCONNECTS, concurrency);

	getrusage(RUSAGE_SELF, &before);
	t0 = now_seconds();
	for (i = 0; i < concurrency; i++)
	{
		handles[i] = curl_easy_init();
		start_request(&state, handles[i], argv[1], body, body_len, argv + 5,
					  argc - 5, started++);
	}
	curl_multi_socket_action(state.multi, CURL_SOCKET_TIMEOUT, 0, &running);

	while (finished < total)
	{
		struct epoll_event events[64];
		int			nevents;
		int			e;
		CURLMsg    *message;
		int			pending;

		nevents = epoll_wait(state.epoll_fd, events, 64,
							 state.timeout_ms < 0 ? 1000 : (int) state.timeout_ms);
		/* a new transfer asks for a timeout of 0: start it now */
		if (nevents == 0 || state.timeout_ms == 0)
			curl_multi_socket_action(state.multi, CURL_SOCKET_TIMEOUT, 0, &running);
		for (e = 0; e < nevents; e++)
		{
			int			fd = events[e].data.fd;
			int			mask = 0;

			if (!state.wanted[fd])
			{
				socket_register(&state, fd, 0);
				continue;
			}
			if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				mask |= CURL_CSELECT_IN;
			if (events[e].events & EPOLLOUT)
				mask |= CURL_CSELECT_OUT;
			curl_multi_socket_action(state.multi, fd, mask, &running);
		}
		while ((message = curl_multi_info_read(state.multi, &pending)) != NULL)
		{
			CURL	   *easy = message->easy_handle;
			long		status = 0;

			if (message->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
			if (message->data.result != CURLE_OK || status < 200 || status > 299)
				failed++;
			finished++;
			curl_multi_remove_handle(state.multi, easy);
			if (started < total)
				start_request(&state, easy, argv[1], body, body_len, argv + 5,
							  argc - 5, started++);
		}
	}
	elapsed = now_seconds() - t0;
	getrusage(RUSAGE_SELF, &after);

	printf("%ld %.3f %.1f %.1f\n", finished, elapsed,
		   (cpu_seconds(&after.ru_utime) - cpu_seconds(&before.ru_utime)) * 1e6 / finished,
		   (cpu_seconds(&after.ru_stime) - cpu_seconds(&before.ru_stime)) * 1e6 / finished);
	if (failed > 0)
	{
		fprintf(stderr, "%ld of %ld requests failed or were not 2xx\n", failed, finished);
		return 1;
	}
	return 0;
}
