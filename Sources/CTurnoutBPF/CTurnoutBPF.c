#include "CTurnoutBPF.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

struct CTurnoutBPF_capture {
    struct bpf_object *object;
};

/* Warnings only, prefixed: libbpf's info and debug lines would bury the one line that says why
 * a program was refused. */
static int CTurnoutBPF_print(enum libbpf_print_level level, const char *format, va_list arguments) {
    if (level != LIBBPF_WARN) return 0;
    fputs("turnout: ", stderr); /* libbpf starts its lines with "libbpf: " */
    return vfprintf(stderr, format, arguments);
}

CTurnoutBPF_capture *CTurnoutBPF_open(const void *bytes, size_t size, const char *pin_directory, int *error) {
    libbpf_set_print(CTurnoutBPF_print);
    LIBBPF_OPTS(bpf_object_open_opts, options, .object_name = "turnout_capture", .pin_root_path = pin_directory);
    struct bpf_object *object = bpf_object__open_mem(bytes, size, &options);
    if (!object) { *error = -errno; return NULL; }
    int status = bpf_object__load(object);
    if (status < 0) { bpf_object__close(object); *error = status; return NULL; }
    CTurnoutBPF_capture *capture = calloc(1, sizeof *capture);
    if (!capture) { bpf_object__close(object); *error = -ENOMEM; return NULL; }
    capture->object = object;
    return capture;
}

void CTurnoutBPF_close(CTurnoutBPF_capture *capture) {
    if (!capture) return;
    bpf_object__close(capture->object);
    free(capture);
}

int CTurnoutBPF_update(CTurnoutBPF_capture *capture, const char *name, const void *keys, size_t key_size,
                       const void *values, size_t value_size, uint32_t count) {
    struct bpf_map *map = bpf_object__find_map_by_name(capture->object, name);
    if (!map) return -ENOENT;
    if (count == 0) return 0;
    int fd = bpf_map__fd(map);
    __u32 done = count;
    if (bpf_map_update_batch(fd, keys, values, &done, NULL) == 0 && done == count) return 0;
    /* Not every map type has batch updates (LPM tries do not); one call per element then. */
    for (uint32_t index = 0; index < count; index++) {
        const char *key = (const char *)keys + index * key_size;
        const char *value = (const char *)values + index * value_size;
        if (bpf_map_update_elem(fd, key, value, BPF_ANY) < 0) return -errno;
    }
    return 0;
}

int CTurnoutBPF_attach(CTurnoutBPF_capture *capture, const char *name, int target_fd, const char *link_pin, int *replaced) {
    struct bpf_program *program = bpf_object__find_program_by_name(capture->object, name);
    if (!program) return -ENOENT;
    *replaced = 0;
    if (access(link_pin, F_OK) == 0) {
        struct bpf_link *pinned = bpf_link__open(link_pin);
        if (!pinned) return errno ? -errno : -EINVAL; /* pinned, yet not a link we can open */
        int status = bpf_link__update_program(pinned, program);
        bpf_link__destroy(pinned); /* closes our descriptor; the pin keeps the link */
        if (status < 0) return status;
        *replaced = 1;
        return 0;
    }
    struct bpf_link *link = bpf_program__type(program) == BPF_PROG_TYPE_SK_LOOKUP
        ? bpf_program__attach_netns(program, target_fd)
        : bpf_program__attach_cgroup(program, target_fd);
    if (!link) return -errno;
    int status = bpf_link__pin(link, link_pin);
    /* Pinned: closing our descriptor leaves it attached. Not pinned: this detaches it again. */
    bpf_link__destroy(link);
    return status < 0 ? status : 0;
}

int CTurnoutBPF_read_array(const char *pin, uint64_t *values, uint32_t count) {
    int fd = bpf_obj_get(pin);
    if (fd < 0) return -errno;
    int status = 0;
    for (uint32_t index = 0; index < count && status == 0; index++) {
        __u64 value = 0;
        if (bpf_map_lookup_elem(fd, &index, &value) < 0) status = -errno;
        values[index] = value;
    }
    close(fd);
    return status;
}

int CTurnoutBPF_count_keys(const char *pin, size_t key_size, uint64_t limit, uint64_t *count) {
    int fd = bpf_obj_get(pin);
    if (fd < 0) return -errno;
    unsigned char key[2][key_size];
    uint64_t found = 0;
    int status = 0;
    /* NULL asks for the first key; each next call the key after the one before. */
    const void *previous = NULL;
    while (found < limit) {
        void *next = key[found % 2];
        if (bpf_map_get_next_key(fd, previous, next) < 0) {
            if (errno != ENOENT) status = -errno;
            break;
        }
        found++;
        previous = next;
    }
    close(fd);
    *count = found;
    return status;
}

/* The kernel's description of the link pinned at `link_pin`. */
static int CTurnoutBPF_link_info(const char *link_pin, struct bpf_link_info *info) {
    int link = bpf_obj_get(link_pin);
    if (link < 0) return -errno;
    memset(info, 0, sizeof *info);
    __u32 length = sizeof *info;
    int status = bpf_obj_get_info_by_fd(link, info, &length) < 0 ? -errno : 0;
    close(link);
    return status;
}

int CTurnoutBPF_read_program_map(const char *link_pin, const char *map, const void *key, void *value) {
    struct bpf_link_info link_info;
    int status = CTurnoutBPF_link_info(link_pin, &link_info);
    if (status < 0) return status;
    int program = bpf_prog_get_fd_by_id(link_info.prog_id);
    if (program < 0) return -errno;
    __u32 map_ids[64] = {0};
    struct bpf_prog_info program_info = {0};
    program_info.nr_map_ids = sizeof map_ids / sizeof map_ids[0];
    program_info.map_ids = (__u64)(unsigned long)map_ids;
    __u32 length = sizeof program_info;
    status = bpf_obj_get_info_by_fd(program, &program_info, &length) < 0 ? -errno : 0;
    close(program);
    if (status < 0) return status;
    __u32 used = program_info.nr_map_ids < 64 ? program_info.nr_map_ids : 64;
    for (__u32 index = 0; index < used; index++) {
        int fd = bpf_map_get_fd_by_id(map_ids[index]);
        if (fd < 0) continue;
        struct bpf_map_info map_info = {0};
        length = sizeof map_info;
        if (bpf_obj_get_info_by_fd(fd, &map_info, &length) == 0 && strcmp(map_info.name, map) == 0) {
            status = bpf_map_lookup_elem(fd, key, value) < 0 ? -errno : 0;
            close(fd);
            return status;
        }
        close(fd);
    }
    return -ENOENT;
}

int CTurnoutBPF_link_target(const char *link_pin, uint64_t *target) {
    struct bpf_link_info info;
    int status = CTurnoutBPF_link_info(link_pin, &info);
    if (status < 0) return status;
    switch (info.type) {
    case BPF_LINK_TYPE_CGROUP: *target = info.cgroup.cgroup_id; return 0;
    case BPF_LINK_TYPE_NETNS: *target = info.netns.netns_ino; return 0;
    default: return -EINVAL;
    }
}
