# Makefile for invsync (PGXS)
#
# make                 build the library and the install script
# make install         install into the server found by pg_config
# make installcheck    pg_regress and isolation tests on a temporary instance
#                      (started by pg_regress itself, library preloaded)

EXTENSION = invsync
EXTVERSION = 0.3

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
ISOLATION = $(basename $(notdir $(sort $(wildcard specs/*.spec))))
ISOLATION_OPTS = --temp-instance=tmp_check_iso --temp-config=test/invsync.conf \
	--encoding=UTF8 --no-locale \
	--load-extension=invsync

PG_CPPFLAGS = -I$(srcdir)/src -std=gnu99
SHLIB_LINK = -lcurl -lcrypto
EXTRA_CLEAN = tmp_check tmp_check_iso output_iso results regression.diffs regression.out

# no LLVM bitcode: JIT inlining of these functions buys nothing
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_SOURCES)
	cat $^ > $@
