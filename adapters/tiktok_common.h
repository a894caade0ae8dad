/*-------------------------------------------------------------------------
 *
 * tiktok_common.h
 *	  What the TikTok Shop adapter (adapters/tiktok.c) shares with the
 *	  Tokopedia adapter (adapters/tokopedia.c): the listing attributes, the
 *	  signing and transport, and the parse functions with the one thing that
 *	  differs between the two channels as a parameter.
 *
 * Since Tokopedia shops merged into TikTok Shop ("Tokopedia & Shop",
 * marketplace-apis.md section 4.1), both channels speak the same Partner
 * API 202309 with the same credentials, paths and envelope; every function
 * is defined once, in tiktok.c.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  adapters/tiktok_common.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVSYNC_TIKTOK_COMMON_H
#define INVSYNC_TIKTOK_COMMON_H

#include "adapter.h"

/* the listing attributes, by index */
#define TIKTOK_PRODUCT_ID		0
#define TIKTOK_SKU_ID			1
#define TIKTOK_WAREHOUSE_ID		2
#define TIKTOK_NATTRIBUTES		3

/* SKUs of one product per stock update (error 12052050 beyond) */
#define TIKTOK_MAX_BATCH		100
/* sku_ids per inventory search (error 12019015 beyond) */
#define TIKTOK_MAX_READ_BATCH	600

/* the production hosts (marketplace-apis.md section 2.1) */
#define TIKTOK_API_HOST			"https://open-api.tiktokglobalshop.com"
#define TIKTOK_AUTH_HOST		"https://auth.tiktok-shops.com"

extern const ListingAttribute tiktok_attributes[TIKTOK_NATTRIBUTES];

extern const char *tiktok_api_base_url(const char *region);
extern void tiktok_build_push(const ShopContext *shop,
							  const ListingPush *items, int nitems,
							  int64 now_ms, HttpRequestSpec *request);
extern void tiktok_parse_push_for(const ShopContext *shop,
								  ListingPush *items, int nitems,
								  const HttpResponseView *response,
								  CallResult *result,
								  const char *platform);
extern void tiktok_build_read_levels(const ShopContext *shop,
									 const ListingPush *items, int nitems,
									 int64 now_ms, HttpRequestSpec *request);
extern void tiktok_parse_read_levels(const ShopContext *shop,
									 ListingPush *items, int nitems,
									 const HttpResponseView *response,
									 CallResult *result);
extern void tiktok_build_order_fetch(const ShopContext *shop,
									 const char *order_id, int64 now_ms,
									 HttpRequestSpec *request);
extern void tiktok_parse_order_fetch(const ShopContext *shop,
									 const char *order_id,
									 const HttpResponseView *response,
									 OrderDetail *out);
extern void tiktok_build_refresh(const ShopContext *shop, int64 now_ms,
								 HttpRequestSpec *request);
extern void tiktok_parse_refresh(const ShopContext *shop,
								 const HttpResponseView *response,
								 TokenRefreshResult *result);

/* pushes (marketplace-apis.md sections 2.7 and 7.4) and order statuses */
#define TIKTOK_NORDER_STATUSES	10
extern const OrderStatus tiktok_order_statuses[];
extern bool tiktok_parse_webhook(const WebhookRequest *request,
								 WebhookEvent *event, const char **why);
extern bool tiktok_verify_webhook(const char *app_key, const char *secret,
								  const WebhookRequest *request);

#endif							/* INVSYNC_TIKTOK_COMMON_H */
