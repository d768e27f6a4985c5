// autoround-cuda: the autoround program with --device cuda. The same source, compiled whole by
// nvcc (Eigen's code must be compiled one way in a program: see autoround::cuda in CMakeLists.txt).
#define AUTOROUND_WITH_CUDA 1
#include "autoround.cpp"
