// Plain-text tables for gclctl's read verbs: a header row and data rows,
// each column padded to its widest cell and separated by two spaces, no
// trailing blanks. Widths count UTF-8 code points, so cells like
// "0.812 ± 0.013" line up.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace gcl::client {

class Table {
 public:
  explicit Table(std::vector<std::string> header);

  // Pads column `column` on the left (numbers). Returns *this.
  Table& AlignRight(size_t column);
  // A row shorter than the header is padded with empty cells; longer rows
  // add columns.
  void AddRow(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }

  void Render(std::ostream& out) const;
  std::string ToString() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<bool> right_;
};

// Display width of UTF-8 text: its code points (continuation bytes skipped).
size_t DisplayWidth(const std::string& text);

}  // namespace gcl::client
