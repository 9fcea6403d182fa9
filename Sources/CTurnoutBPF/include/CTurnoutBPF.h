/* libbpf (Debian's libbpf-dev) for the socket capture of `turnout init --backend bpf`.
 *
 * Why a shim: libbpf's object, map and link handles are opaque structs behind a few dozen calls,
 * and its failures come back as NULL plus errno, or as negative errnos, depending on the call.
 * The capture needs one fixed sequence (open the embedded object with its shared maps pinned,
 * load, fill maps, attach or replace pinned links), so the shim offers that sequence with one
 * error convention, and Swift never holds a libbpf pointer other than the capture's own. It also
 * routes libbpf's log (the verifier's complaint when a program is refused) to stderr with
 * turnout's prefix instead of libbpf's default chatter. Every symbol is prefixed CTurnoutBPF_.
 *
 * Errors: functions that can fail return a negative errno and set nothing else.
 * Threads: a capture object is used from one thread at a time. */
#ifndef C_TURNOUT_BPF_H
#define C_TURNOUT_BPF_H

#include <stddef.h>
#include <stdint.h>
#include "CTurnoutBPFMaps.h"

typedef struct CTurnoutBPF_capture CTurnoutBPF_capture;

/* Opens the BPF object in `bytes` (an ELF file the caller keeps alive only for this call) and
 * loads its programs and maps into the kernel. The maps the object declares with
 * LIBBPF_PIN_BY_NAME are pinned at `pin_directory`/NAME: reused when a compatible map is pinned
 * there already (a capture installed before), else created and pinned. Returns NULL and sets
 * *error to the negative errno; the verifier's reasons, if any, went to stderr. */
CTurnoutBPF_capture *CTurnoutBPF_open(const void *bytes, size_t size, const char *pin_directory, int *error);
/* Releases the object's descriptors. Programs and maps stay in the kernel as long as a pinned
 * link or map (or another process) holds them. */
void CTurnoutBPF_close(CTurnoutBPF_capture *capture);

/* Writes `count` elements (`key_size` and `value_size` bytes each, packed) into map `map`:
 * one batch call where the map allows it, else one call per element. */
int CTurnoutBPF_update(CTurnoutBPF_capture *capture, const char *map, const void *keys, size_t key_size,
                       const void *values, size_t value_size, uint32_t count);

/* Attaches program `program` to `target_fd` (a cgroup directory, or a network namespace for an
 * sk_lookup program) through a BPF link pinned at `link_pin`. When a link is pinned there
 * already, its program is replaced instead, atomically (every connect(2) runs the old program or
 * the new one), and *replaced is set to 1. */
int CTurnoutBPF_attach(CTurnoutBPF_capture *capture, const char *program, int target_fd, const char *link_pin, int *replaced);

/* For `turnout status`, which reads a capture another turnout installed: only its pins.
 * Reads `count` 64-bit values at indices 0… of the pinned array map at `pin` into `values`. */
int CTurnoutBPF_read_array(const char *pin, uint64_t *values, uint32_t count);
/* Counts the keys of the pinned map at `pin` (`key_size` bytes each), stopping at `limit`. */
int CTurnoutBPF_count_keys(const char *pin, size_t key_size, uint64_t limit, uint64_t *count);
/* Reads the value at `key` of the map named `map` that the program behind the pinned link at
 * `link_pin` uses (a per-load map such as `config`, which is pinned nowhere itself). */
int CTurnoutBPF_read_program_map(const char *link_pin, const char *map, const void *key, void *value);
/* What the pinned link at `link_pin` is attached to: its cgroup's id (the cgroup directory's
 * inode number) for a cgroup link, its network namespace's inode number for an sk_lookup link;
 * 0 once that cgroup or namespace is gone (the kernel detached the link, the pin remains). */
int CTurnoutBPF_link_target(const char *link_pin, uint64_t *target);

#endif
