"""The files the compatibility suite's cases read in /work (testing/compat_cases.py): small,
fixed texts, the same in every root, natively and under the vkernel."""

from __future__ import annotations

from pathlib import Path


def write_inputs(work: Path) -> None:
    """The files the cases read: small, fixed texts."""
    work.mkdir()
    words = ["pear", "apple", "fig", "banana", "apple", "cherry", "date", "fig", "elder",
             "grape", "Apple", "kiwi"]
    (work / "words").write_text("".join(f"{w}\n" for w in words))
    (work / "nums").write_text("".join(f"{(i * 7919) % 101}\n" for i in range(40)))
    (work / "table").write_text("".join(f"{i}\t{w}\t{len(w) * i}\n"
                                        for i, w in enumerate(words)))
    (work / "csv").write_text("id,name,qty\n1,bolt,40\n2,nut,15\n3,washer,7\n4,screw,22\n")
    (work / "prose").write_text(
        "The quick brown fox jumps over the lazy dog.\n"
        "Pack my box with five dozen liquor jugs!\n\n"
        "How vexingly quick daft zebras jump;\tsphinx of black quartz, judge my vow.\n")
    (work / "tree" / "a" / "b").mkdir(parents=True)
    (work / "tree" / "a" / "one").write_text("1\n")
    (work / "tree" / "a" / "b" / "two").write_text("22\n")
    (work / "tree" / "three").write_text("333\n")
    (work / "bin.dat").write_bytes(bytes(range(256)) * 3)
    (work / "lua").mkdir()
    (work / "lua" / "util.lua").write_text(LUA_UTIL)
    (work / "lua" / "main.lua").write_text(LUA_MAIN)


#: A Lua module and a script that requires it and reads /work/words (the lua5.4 cases).
LUA_UTIL = """local M = {}
function M.count(path)
  local n, seen, uniq = 0, {}, 0
  for line in io.lines(path) do
    n = n + 1
    local w = line:lower()
    if not seen[w] then seen[w] = true; uniq = uniq + 1 end
  end
  return n, uniq
end
function M.keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end
return M
"""
LUA_MAIN = """package.path = "lua/?.lua;" .. package.path
local util = require("util")
local n, uniq = util.count("words")
print(("lines %d, distinct %d"):format(n, uniq))
local freq = {}
for line in io.lines("words") do
  local c = line:sub(1, 1):lower()
  freq[c] = (freq[c] or 0) + 1
end
for _, k in ipairs(util.keys(freq)) do io.write(k, "=", freq[k], " ") end
print()
print(select("#", ...), ...)
os.exit(#arg)
"""
