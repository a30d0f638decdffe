#include "bindings.h"
namespace bt {
void bind_kernels_misc(py::module_ &m) { (void)m; }
}  // namespace bt
