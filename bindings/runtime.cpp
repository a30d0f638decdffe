#include "bindings.h"
namespace bt {
void bind_runtime(py::module_ &m) { (void)m; }
}  // namespace bt
