// sk-lookup-attach PROGRAM_PIN NETNS LINK_PIN: attaches a pinned sk_lookup program to a network
// namespace (a path such as /run/netns/NAME) and pins the link, so that the attachment outlives
// this process; removing LINK_PIN (or the namespace) detaches it. For scripts/bench/capture
// --inbound: bpftool (7.1) attaches no sk_lookup program.
#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PROGRAM_PIN NETNS LINK_PIN\n", argv[0]);
        return 2;
    }
    int program = bpf_obj_get(argv[1]);
    if (program < 0) { fprintf(stderr, "bpf_obj_get %s: %s\n", argv[1], strerror(errno)); return 1; }
    int netns = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (netns < 0) { fprintf(stderr, "open %s: %s\n", argv[2], strerror(errno)); return 1; }
    int link = bpf_link_create(program, netns, BPF_SK_LOOKUP, NULL);
    if (link < 0) { fprintf(stderr, "bpf_link_create (sk_lookup): %s\n", strerror(errno)); return 1; }
    if (bpf_obj_pin(link, argv[3]) != 0) { fprintf(stderr, "bpf_obj_pin %s: %s\n", argv[3], strerror(errno)); return 1; }
    return 0;
}
