#ifndef PIPELINE_CSQLITE_SHIM_H
#define PIPELINE_CSQLITE_SHIM_H
#include <sqlite3.h>

// SQLITE_TRANSIENT is a macro cast Swift cannot import: SQLite copies the bound value before the call returns.
static inline sqlite3_destructor_type pipeline_sqlite_transient(void) { return SQLITE_TRANSIENT; }

// sqlite3_db_config is variadic; Swift gets one typed wrapper per form we use.
static inline int pipeline_sqlite_db_config_int(sqlite3 *db, int op, int value, int *result) {
    return sqlite3_db_config(db, op, value, result);
}

// Turns off SQLite's memory statistics, whose global mutex every allocation takes. Call before anything else.
static inline int pipeline_sqlite_disable_memory_statistics(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
#endif
