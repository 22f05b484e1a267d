#ifndef PIPELINE_PROCESS_SPAWN_H
#define PIPELINE_PROCESS_SPAWN_H

#include <spawn.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Adds an action closing every descriptor from `lowest` up in the child (glibc's
/// posix_spawn_file_actions_addclosefrom_np, 2.34 and later). glibc declares it only under _GNU_SOURCE, which the Swift
/// importer's view of <spawn.h> does not have; this file's implementation is compiled with it.
///
/// Returns 0, or an errno value (ENOSYS when the C library has no such action).
int pipeline_spawn_actions_close_from(posix_spawn_file_actions_t *actions, int lowest);

#ifdef __cplusplus
}
#endif

#endif
