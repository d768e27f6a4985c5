#pragma once
// Default locations of the real model and text (scripts/fetch-assets.sh puts them there).
#include <cstdlib>
#include <string>

inline std::string asset(const std::string& file) {
  const char* env = std::getenv("AUTOROUND_ASSETS");
  return (env && *env ? std::string(env) : std::string(AUTOROUND_ASSETS_DIR)) + "/" + file;
}
