# Makefile for invsync (PGXS)
#
# make                 build the library and the install script
# make install         install into the server found by pg_config
# make installcheck    pg_regress and isolation tests on a temporary instance
#                      (started by pg_regress itself, library preloaded); the
#                      pg_regress tests run twice, the second time with
#                      adjust()'s direct path off

EXTENSION = invsync
EXTVERSION = 0.5

MODULE_big = invsync
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c adapters/*.c)))

DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
# earlier versions' install scripts, as released, and the upgrade scripts
DATA = $(filter-out $(DATA_built), $(wildcard sql/$(EXTENSION)--*.sql))

# The install script is built from sql/invsync.sql (the ledger) and
# sql/invsync_sync.sql (channels and the sync queue); pg_regress tests are
# the other sql/*.sql files.
SQL_SOURCES = sql/$(EXTENSION).sql sql/$(EXTENSION)_sync.sql
REGRESS = $(filter-out $(EXTENSION)%, \
	$(basename $(notdir $(sort $(wildcard sql/*.sql)))))
REGRESS_OPTS = --temp-instance=tmp_check --temp-config=test/invsync.conf \
	--encoding=UTF8 --no-locale \
	--load-extension=invsync
# The same tests, expected files and instance settings, with
# invsync.direct_path = off: the SQL path must give the same results.
REGRESS_SQL_PATH_OPTS = $(REGRESS_OPTS) --temp-instance=tmp_check_sql_path \
	--temp-config=test/sql_path.conf --outputdir=output_sql_path
ISOLATION = $(basename $(notdir $(sort $(wildcard specs/*.spec))))
ISOLATION_OPTS = --temp-instance=tmp_check_iso --temp-config=test/invsync.conf \
	--encoding=UTF8 --no-locale \
	--load-extension=invsync

PG_CPPFLAGS = -I$(srcdir)/src -std=gnu99
SHLIB_LINK = -lcurl -lcrypto
EXTRA_CLEAN = tmp_check tmp_check_iso output_iso results regression.diffs regression.out \
	tmp_check_sql_path output_sql_path

# installcheck is defined below, not by PGXS
NO_INSTALLCHECK = 1

# no LLVM bitcode: JIT inlining of these functions buys nothing
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_SOURCES)
	cat $^ > $@

# PGXS tracks no header dependencies (unless the server was configured with
# --enable-depend): an object built against an older struct layout would
# otherwise be linked with newer ones.  Every object depends on every header.
$(OBJS): $(wildcard src/*.h adapters/*.h)

# PGXS's installcheck with one target per run, so that make -k runs every
# run whatever fails, and the pg_regress tests run a second time with
# adjust()'s direct path off (the marker line tells tools/test which run a
# result belongs to).
.PHONY: installcheck installcheck-regress installcheck-sql-path \
	installcheck-isolation
installcheck: installcheck-regress installcheck-sql-path installcheck-isolation

installcheck-regress: submake $(REGRESS_PREP)
ifdef REGRESS
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
endif

installcheck-sql-path: submake $(REGRESS_PREP)
ifdef REGRESS
	@echo "+++ regress install-check with invsync.direct_path = off +++"
	$(pg_regress_installcheck) $(REGRESS_SQL_PATH_OPTS) $(REGRESS)
endif

installcheck-isolation: submake
ifdef ISOLATION
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)
endif
