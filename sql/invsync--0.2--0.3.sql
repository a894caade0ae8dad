/*
 * invsync--0.2--0.3.sql
 *	  Upgrade from 0.2: the hardening release.  Every function the worker
 *	  or a trigger runs pins search_path; bundles are flattened when they
 *	  are defined; roles can be pinned to one tenant; secrets are readable
 *	  only by the worker's role and invsync_secrets.
 *	  CREATE OR REPLACE keeps each function's privileges.
 *
 * Copyright (c) 2026, invsync developers
 *
 * IDENTIFICATION
 *	  sql/invsync--0.2--0.3.sql
 */

\echo Use "ALTER EXTENSION invsync UPDATE TO '0.3'" to load this file. \quit

/*
 * The sync worker's own role (invsync.worker_role), no longer a superuser,
 * and the one role besides it that may read secrets.
 */
DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['invsync_worker', 'invsync_secrets']
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;

/* a NULL sku or location is reported as NULL, as adjust() reports it */
CREATE OR REPLACE FUNCTION invsync._check_stockable(p_tenant bigint, p_sku text, p_location text)
	RETURNS void
	LANGUAGE plpgsql STABLE
	AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM invsync.items i
					WHERE i.tenant_id = p_tenant AND i.sku = p_sku) THEN
		RAISE EXCEPTION 'unknown sku %', coalesce('"' || p_sku || '"', 'NULL')
			USING ERRCODE = 'IV001',
				  HINT = 'Create it first with invsync.upsert_item().';
	END IF;
	IF NOT EXISTS (SELECT FROM invsync.locations l
					WHERE l.tenant_id = p_tenant AND l.location = p_location) THEN
		RAISE EXCEPTION 'unknown location %', coalesce('"' || p_location || '"', 'NULL')
			USING ERRCODE = 'IV002',
				  HINT = 'Create it first with invsync.upsert_location().';
	END IF;
	IF EXISTS (SELECT FROM invsync.bundle_components b
				WHERE b.tenant_id = p_tenant AND b.bundle_sku = p_sku) THEN
		RAISE EXCEPTION 'sku "%" is a bundle and holds no stock of its own', p_sku
			USING ERRCODE = 'IV013',
				  HINT = 'Move stock of its components instead.';
	END IF;
END
$$;
