# CMake generated Testfile for 
# Source directory: /work/main/tests/gcl
# Build directory: /work/main/build/tests/gcl
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test([=[data_sampler_test]=] "/work/main/build/tests/gcl/data_sampler_test")
set_tests_properties([=[data_sampler_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[data_synthetic_test]=] "/work/main/build/tests/gcl/data_synthetic_test")
set_tests_properties([=[data_synthetic_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[eval_dice_test]=] "/work/main/build/tests/gcl/eval_dice_test")
set_tests_properties([=[eval_dice_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[eval_hd95_test]=] "/work/main/build/tests/gcl/eval_hd95_test")
set_tests_properties([=[eval_hd95_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[gradients_mitigator_test]=] "/work/main/build/tests/gcl/gradients_mitigator_test")
set_tests_properties([=[gradients_mitigator_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[gradients_pcgrad_test]=] "/work/main/build/tests/gcl/gradients_pcgrad_test")
set_tests_properties([=[gradients_pcgrad_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[losses_grad_filter_test]=] "/work/main/build/tests/gcl/losses_grad_filter_test")
set_tests_properties([=[losses_grad_filter_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[losses_image_test]=] "/work/main/build/tests/gcl/losses_image_test")
set_tests_properties([=[losses_image_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[losses_pixel_test]=] "/work/main/build/tests/gcl/losses_pixel_test")
set_tests_properties([=[losses_pixel_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[model_unet_test]=] "/work/main/build/tests/gcl/model_unet_test")
set_tests_properties([=[model_unet_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[train_finetune_test]=] "/work/main/build/tests/gcl/train_finetune_test")
set_tests_properties([=[train_finetune_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
add_test([=[train_pretrain_test]=] "/work/main/build/tests/gcl/train_pretrain_test")
set_tests_properties([=[train_pretrain_test]=] PROPERTIES  ENVIRONMENT "GCL_SHARED_DATA=/work/main/../shared/data;GCL_BUILD_DIR=/work/main/build;GCL_SOURCE_DIR=/work/main" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/cmake/GclHelpers.cmake;23;add_test;/work/main/tests/gcl/CMakeLists.txt;13;gcl_cc_test;/work/main/tests/gcl/CMakeLists.txt;0;")
