#define _GNU_SOURCE
#include "hl_guest.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int hl_finit_module(int fd, const char *parameters, int flags) {
    return (int)syscall(SYS_finit_module, fd, parameters, flags);
}

int hl_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
    return mount(source, target, type, flags, data);
}

int hl_power_off(void) {
    sync();
    return reboot(RB_POWER_OFF);
}

int hl_kvm_usable(void) {
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) return 0;
    int usable = 0;
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) == KVM_API_VERSION) {
        int vm = ioctl(kvm, KVM_CREATE_VM, 0);
        if (vm >= 0) {
            usable = 1;
            close(vm);
        }
    }
    close(kvm);
    return usable;
}

int hl_interface_up(const char *name) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    int result = ioctl(fd, SIOCGIFFLAGS, &request);
    if (result == 0) {
        request.ifr_flags |= IFF_UP | IFF_RUNNING;
        result = ioctl(fd, SIOCSIFFLAGS, &request);
    }
    close(fd);
    return result;
}
