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

/*
 * Roles pinned to one tenant (src/tenant.c): invsync.current_tenant() is
 * the pinned tenant of a pinned role, whatever it sets invsync.tenant to.
 */
COMMENT ON FUNCTION invsync.current_tenant() IS
	'the tenant invsync functions work in: the tenant the role is pinned to, else the invsync.tenant setting, 0 when unset';

/* the tenant this session is pinned to, NULL when it is not */
CREATE FUNCTION invsync._pinned_tenant() RETURNS bigint
	AS 'MODULE_PATHNAME', 'invsync_pinned_tenant_sql'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION invsync._pinned_tenant() IS
	'the tenant the calling role is pinned to (see invsync.tenant_roles), NULL when it is not pinned';

CREATE TABLE invsync.tenant_roles (
	role		regrole PRIMARY KEY,
	tenant_id	bigint NOT NULL,
	pinned_at	timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT tenant_roles_tenant_range CHECK (tenant_id >= 0)
);
COMMENT ON TABLE invsync.tenant_roles IS
	'roles pinned to one tenant: each, and every role that is a member of it, works in that tenant whatever invsync.tenant says';

/* pins are cached per backend: a change invalidates them everywhere */
CREATE FUNCTION invsync._tenant_roles_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'invsync_tenant_roles_changed'
	LANGUAGE C;

CREATE TRIGGER tenant_roles_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON invsync.tenant_roles
	FOR EACH STATEMENT EXECUTE FUNCTION invsync._tenant_roles_changed();

/*
 * Pin a role to a tenant, or move its pin.  Not SECURITY DEFINER and
 * granted to no role: only the extension's owner (or a superuser) pins.
 * Pinning a role that reads invsync's tables directly (invsync_admin)
 * confines its functions and views only, and says so.
 */
CREATE FUNCTION invsync.pin_role(p_role regrole, p_tenant bigint)
	RETURNS invsync.tenant_roles
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_row		invsync.tenant_roles;
BEGIN
	IF p_role IS NULL OR p_role OPERATOR(pg_catalog.=) 0 THEN
		RAISE EXCEPTION 'invalid role NULL'
			USING ERRCODE = 'IV014';
	END IF;
	IF p_tenant IS NULL OR p_tenant < 0 THEN
		RAISE EXCEPTION 'invalid tenant %', coalesce(p_tenant::text, 'NULL')
			USING ERRCODE = 'IV014',
				  DETAIL = 'A tenant is a non-negative bigint.';
	END IF;
	IF has_table_privilege(p_role, 'invsync.ledger', 'SELECT') THEN
		RAISE WARNING 'role "%" reads invsync''s tables directly', p_role
			USING DETAIL = 'The pin confines what the role does through invsync''s functions and views, not what it reads from the tables.',
				  HINT = 'Pin roles granted invsync_reader, invsync_writer or invsync_webhook.';
	END IF;
	INSERT INTO invsync.tenant_roles AS t (role, tenant_id)
	VALUES (p_role, p_tenant)
	ON CONFLICT (role) DO UPDATE
		SET tenant_id = excluded.tenant_id, pinned_at = now()
	RETURNING * INTO v_row;
	RETURN v_row;
END
$$;
COMMENT ON FUNCTION invsync.pin_role(regrole, bigint) IS
	'pin a role (and its members) to one tenant: from its next transaction on, it works in that tenant whatever it sets invsync.tenant to';

/* remove a role's pin; returns whether it had one */
CREATE FUNCTION invsync.unpin_role(p_role regrole)
	RETURNS boolean
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	DELETE FROM invsync.tenant_roles t WHERE t.role OPERATOR(pg_catalog.=) p_role;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION invsync.unpin_role(regrole) IS
	'remove a role''s pin to a tenant; returns whether it had one';

REVOKE ALL ON invsync.tenant_roles FROM PUBLIC;
GRANT SELECT ON invsync.tenant_roles TO invsync_admin;
REVOKE ALL ON FUNCTION invsync._pinned_tenant(), invsync._tenant_roles_changed(),
	invsync.pin_role(regrole, bigint), invsync.unpin_role(regrole) FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('invsync.tenant_roles', '');

/*
 * Every (sku, location) where stock_levels differs from the ledger: the sum
 * of the changes, or the balance the newest ledger row recorded.  Empty,
 * always; anything it returns is a bug or tampering.  For a role pinned to
 * a tenant, all tenants means its own.
 */
CREATE OR REPLACE FUNCTION invsync.check_consistency(p_all_tenants boolean DEFAULT false)
	RETURNS TABLE (tenant_id bigint, sku text, location text,
				   on_hand bigint, reserved bigint,
				   ledger_on_hand numeric, ledger_reserved numeric,
				   last_on_hand_after bigint, last_reserved_after bigint)
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH sums AS (
		SELECT l.tenant_id, l.sku, l.location,
			   sum(l.on_hand_change) AS on_hand, sum(l.reserved_change) AS reserved,
			   max(l.ledger_id) AS last_id
		  FROM invsync.ledger l
		 WHERE (p_all_tenants AND invsync._pinned_tenant() IS NULL)
			OR l.tenant_id = invsync.current_tenant()
		 GROUP BY l.tenant_id, l.sku, l.location
	)
	SELECT coalesce(s.tenant_id, m.tenant_id), coalesce(s.sku, m.sku),
		   coalesce(s.location, m.location), s.on_hand, s.reserved,
		   m.on_hand, m.reserved, last.on_hand_after, last.reserved_after
	  FROM (SELECT * FROM invsync.stock_levels x
			 WHERE (p_all_tenants AND invsync._pinned_tenant() IS NULL)
				OR x.tenant_id = invsync.current_tenant()) s
	  FULL JOIN sums m
		ON m.tenant_id = s.tenant_id AND m.sku = s.sku AND m.location = s.location
	  LEFT JOIN invsync.ledger last
		ON last.tenant_id = m.tenant_id AND last.ledger_id = m.last_id
	 WHERE s.on_hand IS DISTINCT FROM m.on_hand
		OR s.reserved IS DISTINCT FROM m.reserved
		OR s.on_hand IS DISTINCT FROM last.on_hand_after
		OR s.reserved IS DISTINCT FROM last.reserved_after
	 ORDER BY 1, 2, 3
$$;
COMMENT ON FUNCTION invsync.check_consistency(boolean) IS
	'rows where the cached stock level differs from the ledger; always empty';
