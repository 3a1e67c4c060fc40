/* The header compiles alone as C11 and survives double inclusion. */
#include <qemu_machine.h>
#include <qemu_machine.h>

#if QM_VERSION_MAJOR < 0 || !defined(QM_VERSION_MINOR) || !defined(QM_VERSION_PATCH)
#error "version macros missing"
#endif

int main(void) {
    qm_status s = QM_OK;
    return (int)s;
}
