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
