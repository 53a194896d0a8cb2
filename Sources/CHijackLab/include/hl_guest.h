#ifndef HL_GUEST_H
#define HL_GUEST_H

// What `hijack-lab kernels` needs from the kernel that Swift's Glibc does not offer: the guest's
// init (pid 1 inside qemu) loads modules and powers the machine off, and the host asks
// whether KVM really works before it tells qemu to use it.

/// finit_module(2) on an open module file; `flags` may hold MODULE_INIT_COMPRESSED_FILE (4).
/// Returns 0 or -1 with errno (EEXIST: already loaded).
int hl_finit_module(int fd, const char *parameters, int flags);

/// mount(2). Returns 0 or -1 with errno.
int hl_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data);

/// sync(2), then reboot(RB_POWER_OFF): returns only on failure (-1 with errno).
int hl_power_off(void);

/// 1 when /dev/kvm opens and KVM_CREATE_VM succeeds (the VM is closed again), 0 otherwise.
/// A /dev/kvm that exists is not enough: in a container or nested guest it often fails.
int hl_kvm_usable(void);

/// Sets the flags of interface `name` (up: IFF_UP | IFF_RUNNING added). Returns 0 or -1 with errno.
int hl_interface_up(const char *name);

#endif
