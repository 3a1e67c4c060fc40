// The header compiles as C++17 and survives double inclusion.
#include <qemu_machine.h>
#include <qemu_machine.h>

#include <cstring>

int main() {
    qm_status s = QM_OK;
    const char *v = qm_version();
    return (s == QM_OK && std::strcmp(v, QM_VERSION_STRING) == 0) ? 0 : 1;
}
