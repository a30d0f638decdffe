#include "bindings.h"
namespace bt {
void bind_kernels_pool(py::module_ &m) { (void)m; }
}  // namespace bt
