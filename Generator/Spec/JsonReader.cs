using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace GemmaGen.Specs
{
    /// <summary>
    /// A small strict JSON (RFC 8259) reader that keeps the 1-based line and column of every value and property
    /// name, so a spec error can point at the offending token. The generator targets netstandard2.0 and cannot
    /// use System.Text.Json; config files are a few kilobytes, so a tree of values is all that is needed.
    /// Lines end at <c>\n</c>, <c>\r\n</c> or <c>\r</c>; a column counts UTF-16 code units, like Roslyn's
    /// <c>LinePosition</c>.
    /// </summary>
    internal
    sealed class JsonReader
    {
        /// <summary>Objects and arrays nested deeper than this are refused, so a hostile file cannot exhaust the
        /// stack (the reader is recursive).</summary>
        public const int MaxDepth = 64;

        private readonly string _text;
        private int _pos;
        private int _line = 1;
        private int _lineStart;
        private Error? _error;

        private JsonReader(string text) => _text = text;

        /// <summary>Reads a JSON text whose top-level value is an object, as every config file's is. Never throws:
        /// malformed input gives an <see cref="Error"/> at the position where the problem was detected.</summary>
        public static Result Read(string text)
        {
            var reader = new JsonReader(text);
            reader.SkipWhitespace();
            Value? root = null;
            if (reader.Peek() == '{')
            {
                root = reader.ReadObject(depth: 0);
            }
            else
            {
                reader.Fail("a JSON object ('{') holding the config fields");
            }
            if (root != null)
            {
                reader.SkipWhitespace();
                if (reader._pos < text.Length)
                {
                    reader.Fail("the end of the file after the top-level value");
                    root = null;
                }
            }
            return new Result(root, reader._error);
        }

        /// <summary>The top-level object, or the first syntax error: exactly one of the two is set.</summary>
        public sealed record Result(Value? Root, Error? Error);

        /// <summary>A syntax error: the message says what was expected and what was found.</summary>
        public sealed record Error(string Message, int Line, int Column);

        /// <summary>What a JSON value is.</summary>
        public enum Kind { Object, Array, String, Number, True, False, Null }

        /// <summary>A member of an object; <see cref="Line"/> and <see cref="Column"/> locate the name's opening quote.</summary>
        public sealed class Property
        {
            internal Property(string name, int line, int column, Value value)
            {
                Name = name;
                Line = line;
                Column = column;
                Value = value;
            }

            public string Name { get; }
            public int Line { get; }
            public int Column { get; }
            public Value Value { get; }
        }

        /// <summary>A JSON value and the position of its first character (the brace, bracket, quote, sign or digit).</summary>
        public sealed class Value
        {
            private static readonly IReadOnlyList<Property> NoProperties = System.Array.Empty<Property>();
            private static readonly IReadOnlyList<Value> NoItems = System.Array.Empty<Value>();

            private Value(Kind kind, int line, int column, string text, double number,
                IReadOnlyList<Property> properties, IReadOnlyList<Value> items)
            {
                Kind = kind;
                Line = line;
                Column = column;
                Text = text;
                Number = number;
                Properties = properties;
                Items = items;
            }

            public Kind Kind { get; }
            public int Line { get; }
            public int Column { get; }

            /// <summary>A string's content (escapes decoded), a number's source text (as written, for messages), or
            /// the literal <c>true</c>, <c>false</c> or <c>null</c>; empty for objects and arrays.</summary>
            public string Text { get; }

            /// <summary>A number's value; a magnitude beyond the range of <see cref="double"/> reads as infinity.</summary>
            public double Number { get; }

            /// <summary>An object's members in file order (a repeated name appears twice); empty for other kinds.</summary>
            public IReadOnlyList<Property> Properties { get; }

            /// <summary>An array's elements; empty for other kinds.</summary>
            public IReadOnlyList<Value> Items { get; }

            /// <summary>The value of the last member named <paramref name="name"/>, or null. (The spec parser refuses
            /// repeated names before it reads any.)</summary>
            public Value? Get(string name)
            {
                for (int i = Properties.Count - 1; i >= 0; i--)
                {
                    if (Properties[i].Name == name) return Properties[i].Value;
                }
                return null;
            }

            internal static Value CreateObject(int line, int column, IReadOnlyList<Property> properties) =>
                new Value(Kind.Object, line, column, "", 0, properties, NoItems);

            internal static Value CreateArray(int line, int column, IReadOnlyList<Value> items) =>
                new Value(Kind.Array, line, column, "", 0, NoProperties, items);

            internal static Value CreateScalar(Kind kind, int line, int column, string text, double number = 0) =>
                new Value(kind, line, column, text, number, NoProperties, NoItems);
        }

        private int Column => _pos - _lineStart + 1;

        private Value? ReadValue(int depth)
        {
            SkipWhitespace();
            if (_pos >= _text.Length)
            {
                Fail("a value (object, array, string, number, true, false or null)");
                return null;
            }
            char c = _text[_pos];
            switch (c)
            {
                case '{': return ReadObject(depth);
                case '[': return ReadArray(depth);
                case '"': return ReadString();
                case 't': return ReadLiteral("true", Kind.True);
                case 'f': return ReadLiteral("false", Kind.False);
                case 'n': return ReadLiteral("null", Kind.Null);
                default:
                    if (c == '-' || IsDigit(c)) return ReadNumber();
                    Fail("a value (object, array, string, number, true, false or null)");
                    return null;
            }
        }

        private Value? ReadObject(int depth)
        {
            int line = _line, column = Column;
            if (depth >= MaxDepth) return FailDepth();
            _pos++;
            var properties = new List<Property>();
            SkipWhitespace();
            if (Peek() == '}')
            {
                _pos++;
                return Value.CreateObject(line, column, properties);
            }
            while (true)
            {
                SkipWhitespace();
                if (Peek() != '"')
                {
                    Fail("a property name in double quotes");
                    return null;
                }
                int nameLine = _line, nameColumn = Column;
                Value? name = ReadString();
                if (name == null) return null;
                SkipWhitespace();
                if (Peek() != ':')
                {
                    Fail($"':' after the property name \"{name.Text}\"");
                    return null;
                }
                _pos++;
                Value? value = ReadValue(depth + 1);
                if (value == null) return null;
                properties.Add(new Property(name.Text, nameLine, nameColumn, value));
                SkipWhitespace();
                char next = Peek();
                if (next == '}')
                {
                    _pos++;
                    return Value.CreateObject(line, column, properties);
                }
                if (next != ',')
                {
                    Fail($"',' or '}}' after the value of \"{name.Text}\"");
                    return null;
                }
                _pos++;
            }
        }

        private Value? ReadArray(int depth)
        {
            int line = _line, column = Column;
            if (depth >= MaxDepth) return FailDepth();
            _pos++;
            var items = new List<Value>();
            SkipWhitespace();
            if (Peek() == ']')
            {
                _pos++;
                return Value.CreateArray(line, column, items);
            }
            while (true)
            {
                Value? item = ReadValue(depth + 1);
                if (item == null) return null;
                items.Add(item);
                SkipWhitespace();
                char next = Peek();
                if (next == ']')
                {
                    _pos++;
                    return Value.CreateArray(line, column, items);
                }
                if (next != ',')
                {
                    Fail("',' or ']' after an array element");
                    return null;
                }
                _pos++;
            }
        }

        private Value? ReadString()
        {
            int line = _line, column = Column;
            _pos++;
            var sb = new StringBuilder();
            while (true)
            {
                if (_pos >= _text.Length || _text[_pos] < ' ')
                {
                    // A raw line break or control character is not allowed inside a JSON string: most likely the
                    // closing quote is missing, so say where the string began.
                    Fail($"'\"' to close the string that starts at line {line}, column {column}");
                    return null;
                }
                char c = _text[_pos];
                if (c == '"')
                {
                    _pos++;
                    return Value.CreateScalar(Kind.String, line, column, sb.ToString());
                }
                if (c != '\\')
                {
                    sb.Append(c);
                    _pos++;
                    continue;
                }
                _pos++;
                char escape = Peek();
                switch (escape)
                {
                    case '"': sb.Append('"'); break;
                    case '\\': sb.Append('\\'); break;
                    case '/': sb.Append('/'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;
                    case 't': sb.Append('\t'); break;
                    case 'u':
                        int code = 0;
                        for (int i = 1; i <= 4; i++)
                        {
                            int digit = _pos + i < _text.Length ? HexValue(_text[_pos + i]) : -1;
                            if (digit < 0)
                            {
                                _pos += i;
                                Fail("four hexadecimal digits after '\\u'");
                                return null;
                            }
                            code = code * 16 + digit;
                        }
                        sb.Append((char)code);
                        _pos += 4;
                        break;
                    default:
                        Fail("an escape sequence (\\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX) after '\\'");
                        return null;
                }
                _pos++;
            }
        }

        private Value? ReadNumber()
        {
            int line = _line, column = Column, start = _pos;
            if (Peek() == '-') _pos++;
            if (Peek() == '0')
            {
                _pos++;
            }
            else if (!ReadDigits())
            {
                return null;
            }
            if (Peek() == '.')
            {
                _pos++;
                if (!ReadDigits()) return null;
            }
            if (Peek() == 'e' || Peek() == 'E')
            {
                _pos++;
                if (Peek() == '+' || Peek() == '-') _pos++;
                if (!ReadDigits()) return null;
            }
            string text = _text.Substring(start, _pos - start);
            // The grammar was checked above, so parsing fails only on overflow (and only on .NET Framework, where
            // the compiler may run; .NET Core returns infinity). Either way the value reads as infinity.
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double number))
            {
                number = text[0] == '-' ? double.NegativeInfinity : double.PositiveInfinity;
            }
            return Value.CreateScalar(Kind.Number, line, column, text, number);
        }

        private bool ReadDigits()
        {
            if (!IsDigit(Peek()))
            {
                Fail("a digit");
                return false;
            }
            while (IsDigit(Peek())) _pos++;
            return true;
        }

        private Value? ReadLiteral(string literal, Kind kind)
        {
            if (string.CompareOrdinal(_text, _pos, literal, 0, literal.Length) != 0)
            {
                Fail("a value (object, array, string, number, true, false or null)");
                return null;
            }
            var value = Value.CreateScalar(kind, _line, Column, literal);
            _pos += literal.Length;
            return value;
        }

        private void SkipWhitespace()
        {
            while (_pos < _text.Length)
            {
                char c = _text[_pos];
                if (c == ' ' || c == '\t' || (c == '\uFEFF' && _pos == 0))
                {
                    _pos++;
                }
                else if (c == '\n' || c == '\r')
                {
                    _pos += c == '\r' && _pos + 1 < _text.Length && _text[_pos + 1] == '\n' ? 2 : 1;
                    _line++;
                    _lineStart = _pos;
                }
                else
                {
                    return;
                }
            }
        }

        private char Peek() => _pos < _text.Length ? _text[_pos] : '\0';

        private Value? FailDepth()
        {
            _error = new Error($"Malformed JSON: objects and arrays are nested more than {MaxDepth} deep.", _line, Column);
            return null;
        }

        /// <summary>Records the error at the current position; the reader stops at the first one.</summary>
        private void Fail(string expected) =>
            _error = new Error($"Malformed JSON: expected {expected}, found {DescribeCurrent()}.", _line, Column);

        private string DescribeCurrent()
        {
            if (_pos >= _text.Length) return "the end of the file";
            char c = _text[_pos];
            if (c == '\n' || c == '\r') return "a line break";
            if (c == ' ') return "a space";
            if (c == '\t') return "a tab";
            if (c < ' ' || char.IsWhiteSpace(c) || char.IsControl(c) || char.IsSurrogate(c))
            {
                return "U+" + ((int)c).ToString("X4", CultureInfo.InvariantCulture);
            }
            if (char.IsLetter(c))
            {
                // Show a whole word: "found 'NaN'" says more than "found 'N'".
                int end = _pos;
                while (end < _text.Length && end - _pos < 20 && char.IsLetterOrDigit(_text[end])) end++;
                return "'" + _text.Substring(_pos, end - _pos) + "'";
            }
            return "'" + c + "'";
        }

        private static bool IsDigit(char c) => c >= '0' && c <= '9';

        private static int HexValue(char c)
        {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        }
    }
}
