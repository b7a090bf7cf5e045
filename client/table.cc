#include "client/table.h"

#include <algorithm>
#include <sstream>
#include <utility>

namespace gcl::client {

size_t DisplayWidth(const std::string& text) {
  size_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

Table& Table::AlignRight(size_t column) {
  if (right_.size() <= column) right_.resize(column + 1, false);
  right_[column] = true;
  return *this;
}

void Table::AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }

void Table::Render(std::ostream& out) const {
  size_t columns = header_.size();
  for (const auto& r : rows_) columns = std::max(columns, r.size());
  std::vector<size_t> width(columns, 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], DisplayWidth(row[i]));
  };
  measure(header_);
  for (const auto& r : rows_) measure(r);
  auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < columns; ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      const std::string pad(width[i] - DisplayWidth(cell), ' ');
      if (i > 0) line += "  ";
      const bool right = i < right_.size() && right_[i];
      line += right ? pad + cell : cell + pad;
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << "\n";
  };
  print(header_);
  for (const auto& r : rows_) print(r);
}

std::string Table::ToString() const {
  std::ostringstream s;
  Render(s);
  return s.str();
}

}  // namespace gcl::client
