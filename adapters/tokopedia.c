/*-------------------------------------------------------------------------
 *
 * tokopedia.c
 *	  The Tokopedia adapter: Tokopedia shops reached through the TikTok
 *	  Shop Partner API ("Tokopedia & Shop", marketplace-apis.md section
 *	  4.1), with the TikTok adapter's listings, signing, requests, token
 *	  refresh and classification (tiktok.c), and only what differs here.
 *
 * Since the merge, Tokopedia shops' product and stock APIs are TikTok's
 * 202309 paths on TikTok's hosts, with the shop's cipher, for the
 * Indonesian market.  What differs, kept small, since the public
 * documentation says no more than that products carry a listing_platform
 * (TIKTOK_SHOP or TOKOPEDIA) and that responses carry per-platform errors:
 *
 * - The listing platform is a fact of the shop, not of each listing: a
 *	 shop of this channel is a TOKOPEDIA shop and its listings are its
 *	 Tokopedia listings.  No listing attribute is added, so a listing is
 *	 keyed the same way on both channels.
 * - Its shops are Indonesian: a region other than ID has no production
 *	 host (the engine refuses its rows and says to set the app's
 *	 base_url).
 * - data.errors[] entries carry detail.listing_platform.  [Assumption,
 *	 as in sim/tiktok.md:] both platforms draw on one stock per SKU and
 *	 warehouse, and a SKU with an error entry is not applied at all; so an
 *	 entry fails the listing whichever platform it names, and the message
 *	 says which (one naming TIKTOK_SHOP reads "[TIKTOK_SHOP, sharing this
 *	 SKU's stock with TOKOPEDIA] ...").  Treating it as a success would
 *	 leave the marketplace at the old level while invsync believed it
 *	 published.
 * - Pushes and order statuses are TikTok's (tiktok_parse_webhook): since
 *	 the merge, TikTok pushes a Tokopedia shop's orders with the same
 *	 envelope, statuses and signature (the app key and secret), naming the
 *	 shop by its TikTok shop id, which shops.push_shop_id holds.  The web
 *	 handler tells the channel (handle_webhook('tokopedia', ...)).
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  adapters/tokopedia.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "adapter.h"
#include "tiktok_common.h"

/* the listing platform of this channel's shops */
#define TOKOPEDIA_PLATFORM		"TOKOPEDIA"

/* the market of "Tokopedia & Shop" */
#define TOKOPEDIA_REGION		"ID"

static const char *tokopedia_api_base_url(const char *region);
static void tokopedia_parse_push(const ShopContext *shop, ListingPush *items,
								 int nitems, const HttpResponseView *response,
								 CallResult *result);

const ChannelAdapter tokopedia_adapter = {
	.channel = "tokopedia",
	.attributes = tiktok_attributes,
	.nattributes = TIKTOK_NATTRIBUTES,
	.batch_by = LISTING_ATTRIBUTE(TIKTOK_PRODUCT_ID),
	.siblings_by = LISTING_ATTRIBUTE(TIKTOK_PRODUCT_ID) | LISTING_ATTRIBUTE(TIKTOK_SKU_ID),
	.default_batch = TIKTOK_MAX_BATCH,
	.max_batch = TIKTOK_MAX_BATCH,
	.max_read_batch = TIKTOK_MAX_READ_BATCH,
	.read_by = 0,
	.api_base_url = tokopedia_api_base_url,
	.auth_base_url = TIKTOK_AUTH_HOST,
	.build_push = tiktok_build_push,
	.parse_push = tokopedia_parse_push,
	.build_read_levels = tiktok_build_read_levels,
	.parse_read_levels = tiktok_parse_read_levels,
	.build_order_fetch = tiktok_build_order_fetch,
	.parse_order_fetch = tiktok_parse_order_fetch,
	.build_refresh = tiktok_build_refresh,
	.parse_refresh = tiktok_parse_refresh,
	.parse_webhook = tiktok_parse_webhook,
	.verify_webhook = tiktok_verify_webhook,
	.webhook_signature_header = "Authorization",
	.order_statuses = tiktok_order_statuses,
	.norder_statuses = TIKTOK_NORDER_STATUSES
};

/*
 * TikTok's host for an Indonesian shop (or one whose region is not
 * recorded); NULL, no host, for any other region.
 */
static const char *
tokopedia_api_base_url(const char *region)
{
	if (region == NULL || pg_strcasecmp(region, TOKOPEDIA_REGION) == 0)
		return tiktok_api_base_url(region);
	return NULL;
}

/* parse_push: TikTok's, with errors read for the TOKOPEDIA platform */
static void
tokopedia_parse_push(const ShopContext *shop, ListingPush *items, int nitems,
					 const HttpResponseView *response, CallResult *result)
{
	tiktok_parse_push_for(shop, items, nitems, response, result,
						  TOKOPEDIA_PLATFORM);
}
