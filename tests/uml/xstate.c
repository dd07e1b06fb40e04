/*
 * Preloaded into linux.uml by tests/uml/run.sh.
 *
 * User-mode Linux 6.1 restores a guest process's FPU state with
 * ptrace(PTRACE_SETREGSET, NT_X86_XSTATE) from a buffer of its own fixed
 * size (legacy area, header and AVX: 832 bytes). The host kernel accepts
 * that request only with a buffer of exactly its full XSAVE size
 * (arch/x86/kernel/fpu/regset.c, xstateregs_set: "count != max_size" is
 * -EFAULT), which on a CPU with AVX-512 or AMX is larger. The guest's init
 * then dies at once with "ptrace set fp regs failed, errno = 14". Newer UML
 * kernels size the buffer from CPUID; this shim does the same from outside:
 * it reads the process's whole XSAVE area, lays UML's part over its start and
 * writes the whole area back. The components UML does not know (AVX-512,
 * AMX) keep the values the host process already holds, as they would on a
 * CPU without them. Every other request passes through unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(enum __ptrace_request, pid_t, void *, void *);

long ptrace(enum __ptrace_request request, ...)
{
	static ptrace_fn real;
	/* Far more than any XSAVE area (AMX's is about 11 KiB). UML calls
	 * ptrace from one thread at a time. */
	static unsigned char whole_area[65536] __attribute__((aligned(64)));
	va_list ap;
	pid_t pid;
	void *addr;
	void *data;

	va_start(ap, request);
	pid = va_arg(ap, pid_t);
	addr = va_arg(ap, void *);
	data = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
	if (request == PTRACE_SETREGSET && (long)addr == NT_X86_XSTATE) {
		struct iovec *given = data;
		struct iovec whole = { whole_area, sizeof(whole_area) };

		/* GETREGSET shrinks iov_len to the area's real size. */
		if (real(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &whole) == 0 &&
		    whole.iov_len > given->iov_len) {
			memcpy(whole_area, given->iov_base, given->iov_len);
			return real(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &whole);
		}
	}
	return real(request, pid, addr, data);
}
