#-----------------------------------------------------------------------------
# pyradiomics for the RadTyper extension package, built on the extension build machines (they have a C
# compiler; users do not). pyradiomics-bhklab 3.1.4 (the maintained fork: same `radiomics` package; the 3.1.0
# sdist of `pyradiomics` does not build) is compiled against Slicer's own Python and numpy; its dependencies
# are listed explicitly and installed with --no-deps, so that Slicer's bundled numpy and SimpleITK are never
# replaced. docopt (needed by pykwalify) has no wheel either, hence it is installed here too.
#-----------------------------------------------------------------------------
set(proj python-pyradiomics)

set(${proj}_DEPENDENCIES "")
ExternalProject_Include_Dependencies(${proj} PROJECT_VAR proj DEPENDS_VAR ${proj}_DEPENDENCIES)

if(${SUPERBUILD_TOPLEVEL_PROJECT}_USE_SYSTEM_${proj})
  message(FATAL_ERROR "Enabling ${SUPERBUILD_TOPLEVEL_PROJECT}_USE_SYSTEM_${proj} is not supported")
endif()

set(python_packages_DIR "${CMAKE_BINARY_DIR}/python-packages-install")
file(TO_NATIVE_PATH ${python_packages_DIR} python_packages_DIR_NATIVE_DIR)

set(_packages
  "pyradiomics-bhklab==3.1.4"
  "PyWavelets>=1.6"
  "pykwalify>=1.8"
  "docopt>=0.6.2"
  "python-dateutil>=2.8"
  "ruamel.yaml>=0.17"
  "six>=1.16"
  )

set(_wrapper_script)
if(MSVC)
  find_package(Vcvars REQUIRED)
  set(_wrapper_script ${Vcvars_WRAPPER_BATCH_FILE})
endif()

ExternalProject_Add(${proj}
  ${${proj}_EP_ARGS}
  DOWNLOAD_COMMAND ""
  SOURCE_DIR ${CMAKE_BINARY_DIR}/${proj}
  BUILD_IN_SOURCE 1
  CONFIGURE_COMMAND ""
  BUILD_COMMAND ""
  INSTALL_COMMAND ${CMAKE_COMMAND} -E env PYTHONNOUSERSITE=1 CC=${CMAKE_C_COMPILER}
    ${_wrapper_script} ${PYTHON_EXECUTABLE} -m pip install --no-deps --prefix ${python_packages_DIR_NATIVE_DIR}
    ${_packages}
  LOG_INSTALL 1
  DEPENDS ${${proj}_DEPENDENCIES}
  )

ExternalProject_GenerateProjectDescription_Step(${proj})

# Build tree: the launcher finds the packages
set(${proj}_PYTHONPATH_LAUNCHER_BUILD
  ${python_packages_DIR}/${PYTHON_SITE_PACKAGES_SUBDIR}
  )
mark_as_superbuild(
  VARS ${proj}_PYTHONPATH_LAUNCHER_BUILD
  LABELS "PYTHONPATH_LAUNCHER_BUILD"
  )
mark_as_superbuild(python_packages_DIR:PATH)
