#include <sched.h>
#include "CTurnoutLinux.h"

const int CTurnoutLinux_CLONE_NEWNET = CLONE_NEWNET;

int CTurnoutLinux_setns(int fd, int nstype) {
    return setns(fd, nstype);
}
