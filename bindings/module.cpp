// The biotrain_rt._core extension module.
#include "bindings.h"

PYBIND11_MODULE(_core, m) {
    m.doc() = "biotrain-rt C core: kernels, op table, graph, planner, executor";
    bt::bind_kernels_conv(m);
    bt::bind_kernels_linear(m);
    bt::bind_kernels_norm(m);
    bt::bind_kernels_activation(m);
    bt::bind_kernels_pool(m);
    bt::bind_kernels_elementwise(m);
    bt::bind_kernels_loss(m);
    bt::bind_kernels_misc(m);
    bt::bind_runtime(m);
    bt::bind_op_call(m);
    bt::bind_kernels_fixed(m);
}
