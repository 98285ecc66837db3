using System;
using System.Text;

namespace GemmaGen.Generator
{
    /// <summary>Plain-text source writer with indentation; the emitter writes code as text, never as syntax trees.</summary>
    internal sealed class CodeWriter
    {
        private readonly StringBuilder _text = new StringBuilder();
        private int _depth;

        /// <summary>Writes one line at the current indentation (an empty line stays empty).</summary>
        public CodeWriter Line(string line = "")
        {
            if (line.Length > 0) _text.Append(' ', _depth * 4).Append(line);
            _text.Append('\n');
            return this;
        }

        /// <summary>Writes <paramref name="header"/> (if any) and an opening brace, and indents.</summary>
        public CodeWriter Open(string? header = null)
        {
            if (header != null) Line(header);
            Line("{");
            _depth++;
            return this;
        }

        /// <summary>Outdents and writes a closing brace followed by <paramref name="suffix"/>.</summary>
        public CodeWriter Close(string suffix = "")
        {
            _depth--;
            return Line("}" + suffix);
        }

        /// <summary>Writes a block: header, braces, and the body written by <paramref name="body"/>.</summary>
        public CodeWriter Block(string header, Action body)
        {
            Open(header);
            body();
            return Close();
        }

        public override string ToString() => _text.ToString();
    }
}
