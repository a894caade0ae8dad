/*
 * invsync--0.4--0.5.sql
 *	  Upgrade from 0.4: a claim and an enqueue path whose cost follows the
 *	  rows they touch, not the backlog or the number of shops.
 */

\echo Use "ALTER EXTENSION invsync UPDATE TO '0.5'" to load this file. \quit
