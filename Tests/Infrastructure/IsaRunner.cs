using System.Globalization;
using System.Reflection;
using System.Runtime.Intrinsics;
using System.Text;
using Xunit;
using Xunit.Abstractions;
using Xunit.Sdk;
using SkipException = Xunit.SkipException;

namespace GemmaGen.Tests.Infrastructure;

/// <summary>
/// Runs every test of the <see cref="IsaSensitiveAttribute"/> classes of this assembly by reflection, without
/// xunit's runner, so they can run in a process started with instruction sets disabled (<c>GemmaGen.Tests.dll
/// --isa-run</c>, started by <see cref="IsaTests"/>). It follows xunit's rules for what those classes use:
/// <c>[Fact]</c>; <c>[Theory]</c> with any data attribute (<c>[InlineData]</c>, <c>[MemberData]</c>,
/// <c>[ClassData]</c>), arguments converted and optional parameters filled as xunit does; <c>Skip</c> on the
/// test or on a data row; <c>[SkippableFact]</c> and <c>[SkippableTheory]</c> (Xunit.SkippableFact), whose
/// <see cref="SkipException"/> (<c>Skip.If</c>, <c>Skip.IfNot</c>) skips the test; a new instance per test, disposed afterwards (<see cref="IDisposable"/>,
/// <see cref="IAsyncLifetime"/>); Task-returning tests awaited; constructor parameters that are class
/// fixtures (<see cref="IClassFixture{TFixture}"/>, one instance per class) or an <see cref="ITestOutputHelper"/>.
/// </summary>
public static class IsaRunner
{
    /// <summary>The command-line switch of the test assembly that runs this runner.</summary>
    public const string Argument = "--isa-run";

    /// <summary>Tells the child which vector widths must be off; it refuses to run tests otherwise, so a switch
    /// that stopped working (the runtime renames them) cannot pass unnoticed.</summary>
    public const string ExpectationVariable = "GEMMAGEN_EXPECT_ISA";

    /// <summary><see cref="ExpectationVariable"/> value: Vector512 must not be accelerated.</summary>
    public const string NoVector512 = "no-vector512";

    /// <summary><see cref="ExpectationVariable"/> value: neither Vector256 nor Vector512 may be accelerated.</summary>
    public const string NoVector256 = "no-vector256";

    /// <summary><see cref="ExpectationVariable"/> value: AVX-VNNI must be off (the integer prefill falls back).</summary>
    public const string NoAvxVnni = "no-avxvnni";

    /// <summary>
    /// Checks the ISA expectation, runs the tests and writes one line per failure (and per skip) and a final
    /// <c>N passed, M failed, K skipped</c>. Returns 0 only when nothing failed and something passed.
    /// </summary>
    public static async Task<int> RunAsync(TextWriter output)
    {
        output.WriteLine(
            $"ISA: Vector512 {Vector512.IsHardwareAccelerated}, Vector256 {Vector256.IsHardwareAccelerated}, " +
            $"Vector128 {Vector128.IsHardwareAccelerated}, Vector<byte>.Count {System.Numerics.Vector<byte>.Count}");
        string? problem = CheckExpectation(Environment.GetEnvironmentVariable(ExpectationVariable));
        if (problem != null)
        {
            output.WriteLine($"ISA check failed: {problem}");
            return 1;
        }

        int passed = 0, failed = 0, skipped = 0;
        var classes = typeof(IsaRunner).Assembly.GetTypes()
            .Where(t => t.IsClass && !t.IsAbstract && t.IsDefined(typeof(IsaSensitiveAttribute), inherit: false))
            .OrderBy(t => t.FullName, StringComparer.Ordinal);
        foreach (var testClass in classes)
        {
            await using var fixtures = await ClassFixtures.CreateAsync(testClass);
            foreach (var test in Discover(testClass))
            {
                if (test.Skip != null)
                {
                    skipped++;
                    output.WriteLine($"SKIP {test.Name}: {test.Skip}");
                    continue;
                }
                var log = new TestOutput();
                var failure = test.DiscoveryError ?? await ExecuteAsync(testClass, test, fixtures, log);
                if (failure == null)
                {
                    passed++;
                    continue;
                }
                if (test.Skippable && failure is SkipException skip)
                {
                    skipped++;
                    output.WriteLine($"SKIP {test.Name}: {skip.Message}");
                    continue;
                }
                failed++;
                output.WriteLine($"FAIL {test.Name}: {Describe(failure)}");
                foreach (string line in log.Lines) output.WriteLine($"    {line}");
            }
        }
        output.WriteLine($"{passed} passed, {failed} failed, {skipped} skipped");
        return failed == 0 && passed > 0 ? 0 : 1;
    }

    /// <summary>Null when the accelerated vector widths match <paramref name="expectation"/>, else what is wrong.</summary>
    private static string? CheckExpectation(string? expectation) => expectation switch
    {
        null or "" => null,
        NoVector512 when Vector512.IsHardwareAccelerated => "Vector512.IsHardwareAccelerated is true; expected false",
        NoVector512 => null,
        NoVector256 when Vector256.IsHardwareAccelerated || Vector512.IsHardwareAccelerated =>
            $"Vector256.IsHardwareAccelerated is {Vector256.IsHardwareAccelerated} and Vector512.IsHardwareAccelerated " +
            $"is {Vector512.IsHardwareAccelerated}; expected both false",
        NoVector256 => null,
        NoAvxVnni when System.Runtime.Intrinsics.X86.AvxVnni.IsSupported => "AvxVnni.IsSupported is true; expected false",
        NoAvxVnni => null,
        _ => $"unknown {ExpectationVariable} value '{expectation}' (expected {NoVector512}, {NoVector256} or {NoAvxVnni})",
    };

    /// <summary>One test to run: a fact, or a theory with one data row. <paramref name="Skippable"/>: a
    /// <see cref="SkipException"/> it throws means skipped, not failed.</summary>
    private sealed record TestCase(string Name, MethodInfo Method, object?[] Arguments, string? Skip, Exception? DiscoveryError, bool Skippable = false);

    /// <summary>The tests of <paramref name="testClass"/> in declaration order, theories expanded by data row.</summary>
    private static List<TestCase> Discover(Type testClass)
    {
        var tests = new List<TestCase>();
        var methods = testClass.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static)
            .Where(m => m.IsDefined(typeof(FactAttribute), inherit: true))
            .OrderBy(m => m.MetadataToken);
        foreach (var method in methods)
        {
            var fact = method.GetCustomAttribute<FactAttribute>(inherit: true)!;
            string name = $"{testClass.Name}.{method.Name}";
            bool skippable = fact is SkippableFactAttribute or SkippableTheoryAttribute;
            if (fact.Skip != null)
            {
                tests.Add(new TestCase(name, method, [], fact.Skip, null));
                continue;
            }
            if (fact is not TheoryAttribute)
            {
                tests.Add(new TestCase(name, method, [], null, null, skippable));
                continue;
            }
            foreach (var data in method.GetCustomAttributes<DataAttribute>(inherit: true))
            {
                try
                {
                    foreach (object?[] row in data.GetData(method))
                        tests.Add(new TestCase($"{name}({FormatArguments(row)})", method, row, data.Skip, null, skippable));
                }
                catch (Exception e)
                {
                    tests.Add(new TestCase($"{name}[{data.GetType().Name}]", method, [], null, e));
                }
            }
        }
        return tests;
    }

    /// <summary>Runs one test; returns its failure, or null when it passed.</summary>
    private static async Task<Exception?> ExecuteAsync(Type testClass, TestCase test, ClassFixtures fixtures, TestOutput log)
    {
        try
        {
            var method = test.Method;
            if (method.IsGenericMethodDefinition)
            {
                var typeArguments = Reflector.Wrap(method).ResolveGenericTypes(test.Arguments);
                method = method.MakeGenericMethod(typeArguments.Select(t => ((IReflectionTypeInfo)t).Type).ToArray());
            }
            var arguments = Reflector.ConvertArguments(test.Arguments, method.GetParameters().Select(p => p.ParameterType).ToArray());
            arguments = method.ResolveMethodArguments(arguments);

            object? instance = method.IsStatic ? null : fixtures.CreateTestClass(testClass, log);
            try
            {
                if (instance is IAsyncLifetime lifetime) await lifetime.InitializeAsync();
                object? result = method.Invoke(instance, BindingFlags.DoNotWrapExceptions, binder: null, arguments, culture: null);
                if (result is Task task) await task;
            }
            finally
            {
                if (instance is IAsyncLifetime lifetime) await lifetime.DisposeAsync();
                (instance as IDisposable)?.Dispose();
            }
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    /// <summary>The message on one line; the exception type too unless it is an xunit assertion.</summary>
    private static string Describe(Exception failure)
    {
        if (failure is AggregateException { InnerExceptions.Count: 1 } aggregate) failure = aggregate.InnerExceptions[0];
        string message = string.Join(" | ", failure.Message.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0));
        return failure is XunitException ? message : $"{failure.GetType().Name}: {message}";
    }

    private static string FormatArguments(object?[] row) => string.Join(", ", row.Select(a => a switch
    {
        null => "null",
        string s => $"\"{s}\"",
        _ => Convert.ToString(a, CultureInfo.InvariantCulture),
    }));

    /// <summary>The class fixtures of one test class (one instance each, for all its tests) and the constructor
    /// that receives them.</summary>
    private sealed class ClassFixtures : IAsyncDisposable
    {
        private readonly Dictionary<Type, object> _fixtures = [];
        private Exception? _failure;

        public static async Task<ClassFixtures> CreateAsync(Type testClass)
        {
            var result = new ClassFixtures();
            var fixtureTypes = testClass.GetInterfaces()
                .Where(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IClassFixture<>))
                .Select(i => i.GenericTypeArguments[0]);
            try
            {
                foreach (var type in fixtureTypes)
                {
                    object fixture = Activator.CreateInstance(type)!;
                    result._fixtures.Add(type, fixture);
                    if (fixture is IAsyncLifetime lifetime) await lifetime.InitializeAsync();
                }
            }
            catch (Exception e)
            {
                result._failure = new InvalidOperationException($"a class fixture of {testClass.Name} failed: {e.Message}", e);
            }
            return result;
        }

        /// <summary>A new instance of <paramref name="testClass"/>, its constructor given fixtures and the test's log.</summary>
        public object CreateTestClass(Type testClass, ITestOutputHelper log)
        {
            if (_failure != null) throw _failure;
            var constructors = testClass.GetConstructors();
            if (constructors.Length != 1)
                throw new InvalidOperationException($"{testClass.Name} must have exactly one public constructor");
            var arguments = constructors[0].GetParameters().Select(p =>
                p.ParameterType == typeof(ITestOutputHelper) ? log :
                _fixtures.TryGetValue(p.ParameterType, out var fixture) ? fixture :
                throw new InvalidOperationException(
                    $"{testClass.Name}'s constructor parameter '{p.Name}' is neither a class fixture nor an ITestOutputHelper"));
            return constructors[0].Invoke(BindingFlags.DoNotWrapExceptions, binder: null, arguments.ToArray(), culture: null);
        }

        public async ValueTask DisposeAsync()
        {
            foreach (object fixture in _fixtures.Values)
            {
                if (fixture is IAsyncLifetime lifetime) await lifetime.DisposeAsync();
                (fixture as IDisposable)?.Dispose();
            }
        }
    }

    /// <summary>What a test wrote through <see cref="ITestOutputHelper"/>; shown under its failure line.</summary>
    private sealed class TestOutput : ITestOutputHelper
    {
        private readonly StringBuilder _text = new();

        public IEnumerable<string> Lines => _text.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);

        public void WriteLine(string message) => _text.Append(message).Append('\n');

        public void WriteLine(string format, params object[] args) => WriteLine(string.Format(CultureInfo.InvariantCulture, format, args));
    }
}
