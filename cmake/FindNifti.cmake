# Debian's NIFTI CMake config points at missing files; find nifti2 + znz by name.
find_path(NIFTI_INCLUDE_DIR nifti2_io.h PATH_SUFFIXES nifti REQUIRED)
find_library(NIFTI2_LIBRARY nifti2 REQUIRED)
find_library(ZNZ_LIBRARY znz REQUIRED)
add_library(gcl_nifti INTERFACE)
# nifti2_io.h includes znzlib.h unqualified, so the nifti folder itself goes on the path.
target_include_directories(gcl_nifti INTERFACE ${NIFTI_INCLUDE_DIR})
target_link_libraries(gcl_nifti INTERFACE ${NIFTI2_LIBRARY} ${ZNZ_LIBRARY} ZLIB::ZLIB m)
